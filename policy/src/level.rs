//! Verification levels: which validation is enforced, logged or skipped.
//!
//! Input: a level name and an optional `override` map from a trust policy
//! statement. Output: an [`Enforcement`] for each [`Validation`]. The table
//! is the Notary Project's; nothing here knows about signatures or time.

use std::fmt;
use std::str::FromStr;

/// A spelled value that is not one of the names a setting accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported {what} {value:?}")]
pub struct UnknownValue {
    /// What was being parsed (`"verification level"`, `"trust store type"`, …).
    pub what: &'static str,
    /// The value as written.
    pub value: String,
}

macro_rules! spelled_enum {
    ($ty:ident, $what:literal, { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The spelling used in `trustpolicy.json`.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A predefined signature verification level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Level {
    /// Enforce every validation.
    Strict,
    /// Enforce integrity and authenticity; log the rest.
    Permissive,
    /// Enforce integrity; log the rest.
    Audit,
    /// Verify nothing: the image is forwarded unchecked.
    Skip,
}

spelled_enum!(Level, "verification level", {
    Strict => "strict",
    Permissive => "permissive",
    Audit => "audit",
    Skip => "skip",
});

/// One validation of a signature, in the order the spec lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Validation {
    /// The artifact is unaltered and the signature is not corrupted.
    Integrity,
    /// The signature chains to a trust store and the signer is a trusted identity.
    Authenticity,
    /// The signature was made while the signing certificate was valid.
    AuthenticTimestamp,
    /// The signature's optional expiry time has not passed.
    Expiry,
    /// The signing identity has not been revoked.
    Revocation,
}

spelled_enum!(Validation, "validation", {
    Integrity => "integrity",
    Authenticity => "authenticity",
    AuthenticTimestamp => "authenticTimestamp",
    Expiry => "expiry",
    Revocation => "revocation",
});

impl Validation {
    /// Every validation, in spec order.
    pub const ALL: [Validation; 5] = [
        Self::Integrity,
        Self::Authenticity,
        Self::AuthenticTimestamp,
        Self::Expiry,
        Self::Revocation,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What a failure of one validation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enforcement {
    /// A failure rejects the signature.
    Enforce,
    /// A failure is logged and verification goes on.
    Log,
    /// The validation is not performed.
    Skip,
}

spelled_enum!(Enforcement, "validation action", {
    Enforce => "enforce",
    Log => "log",
    Skip => "skip",
});

/// When the timestamp countersignature is verified (`signatureVerification.verifyTimestamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VerifyTimestamp {
    /// Always verify it (notation's default).
    #[default]
    Always,
    /// Verify it only when the signing certificate chain has expired.
    AfterCertExpiry,
}

spelled_enum!(VerifyTimestamp, "verifyTimestamp option", {
    Always => "always",
    AfterCertExpiry => "afterCertExpiry",
});

/// Whether the timestamp's own certificate chain is checked for revocation
/// (notation's `signatureVerification.skipTimestampRevocationCheck`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TimestampRevocation {
    /// Check it (the default).
    #[default]
    Check,
    /// Do not check it.
    Skip,
}

impl Level {
    /// The level's own action for `v`, before any override.
    pub fn enforcement(self, v: Validation) -> Enforcement {
        // "|*strict*|…|enforced|enforced|enforced|enforced|enforced|
        //  |*permissive*|…|enforced|enforced|logged|logged|logged|
        //  |*audit*|…|enforced|logged|logged|logged|logged|
        //  |*skip*|…|skipped|skipped|skipped|skipped|skipped|"
        // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#signature-verification-details
        use Enforcement::{Enforce, Log, Skip};
        use Validation::{Authenticity, Integrity};
        match (self, v) {
            (Level::Strict, _) => Enforce,
            (Level::Permissive, Integrity | Authenticity) => Enforce,
            (Level::Permissive, _) => Log,
            (Level::Audit, Integrity) => Enforce,
            (Level::Audit, _) => Log,
            (Level::Skip, _) => Skip,
        }
    }
}

/// Why an `override` entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OverrideError {
    /// `skip` cannot be customised.
    #[error("uses level \"skip\", which cannot be customized with \"override\"")]
    WithSkip,
    /// The key is not a validation name.
    #[error("overrides unknown validation {key:?}, supported keys are \"authenticity\", \"authenticTimestamp\", \"expiry\" and \"revocation\"")]
    UnknownValidation {
        /// The key as written.
        key: String,
    },
    /// The value is not an action name.
    #[error("overrides {validation} with unsupported action {value:?}, supported values are \"enforce\", \"log\" and \"skip\"")]
    UnknownAction {
        /// The validation being overridden.
        validation: Validation,
        /// The value as written.
        value: String,
    },
    /// `integrity` is always enforced.
    #[error("overrides \"integrity\", which is always enforced and cannot be overridden")]
    Integrity,
    /// Only `revocation` may be skipped.
    #[error("sets {validation} to \"skip\", only \"revocation\" can be skipped")]
    SkipNotAllowed {
        /// The validation that was set to skip.
        validation: Validation,
    },
    /// The same key appears twice in the map.
    #[error("overrides {validation} more than once")]
    Duplicate {
        /// The repeated validation.
        validation: Validation,
    },
}

/// A level plus its `override` map: the statement's action for every validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationLevel {
    level: Level,
    overrides: [Option<Enforcement>; 5],
}

impl VerificationLevel {
    /// A predefined level without overrides.
    pub fn new(level: Level) -> Self {
        Self {
            level,
            overrides: [None; 5],
        }
    }

    /// `level` customised by the `override` entries, in the order written.
    ///
    /// # Errors
    ///
    /// The first entry the spec does not allow, as an [`OverrideError`].
    pub fn with_overrides<'a>(
        level: Level,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, OverrideError> {
        let mut out = Self::new(level);
        for (key, value) in entries {
            // "Supported values for `level` are - `strict`, `permissive` and `audit`.
            //  A `skip` level cannot be customized."
            // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#custom-verification-level
            if level == Level::Skip {
                return Err(OverrideError::WithSkip);
            }
            let validation: Validation =
                key.parse().map_err(|_| OverrideError::UnknownValidation {
                    key: key.to_owned(),
                })?;
            let action: Enforcement = value.parse().map_err(|_| OverrideError::UnknownAction {
                validation,
                value: value.to_owned(),
            })?;
            // "`integrity` validation cannot be overriden, and therefore cannot be specified as a key.
            //  `authenticity` - Supported values are `enforce` and `log`. […]
            //  `revocation` - Supported values are `enforce`, `log`, and `skip`."
            // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#custom-verification-level
            if validation == Validation::Integrity {
                return Err(OverrideError::Integrity);
            }
            if action == Enforcement::Skip && validation != Validation::Revocation {
                return Err(OverrideError::SkipNotAllowed { validation });
            }
            let slot = &mut out.overrides[validation.index()];
            if slot.is_some() {
                return Err(OverrideError::Duplicate { validation });
            }
            *slot = Some(action);
        }
        Ok(out)
    }

    /// The predefined level this customises.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The action for `v`: the override if any, else the level's table.
    pub fn enforcement(&self, v: Validation) -> Enforcement {
        self.overrides[v.index()].unwrap_or_else(|| self.level.enforcement(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Enforcement::{Enforce as E, Log as L, Skip as S};

    /// `override` entries as written: (key, value).
    type Entries = &'static [(&'static str, &'static str)];

    #[test]
    fn level_table_matches_the_spec() {
        // integrity, authenticity, authenticTimestamp, expiry, revocation
        let cases = [
            (Level::Strict, [E, E, E, E, E]),
            (Level::Permissive, [E, E, L, L, L]),
            (Level::Audit, [E, L, L, L, L]),
            (Level::Skip, [S, S, S, S, S]),
        ];
        for (level, want) in cases {
            for (v, w) in Validation::ALL.into_iter().zip(want) {
                assert_eq!(level.enforcement(v), w, "{level} {v}");
                assert_eq!(VerificationLevel::new(level).enforcement(v), w);
            }
        }
    }

    #[test]
    fn overrides_apply_on_top_of_the_level() {
        let cases: &[(Level, Entries, [Enforcement; 5])] = &[
            (
                Level::Strict,
                &[("expiry", "log"), ("revocation", "skip")],
                [E, E, E, L, S],
            ),
            (
                Level::Audit,
                &[("authenticity", "enforce")],
                [E, E, L, L, L],
            ),
            (
                Level::Permissive,
                &[("authenticTimestamp", "enforce"), ("authenticity", "log")],
                [E, L, E, L, L],
            ),
            (Level::Strict, &[], [E, E, E, E, E]),
        ];
        for (level, entries, want) in cases {
            let vl = VerificationLevel::with_overrides(*level, entries.iter().copied()).unwrap();
            for (v, w) in Validation::ALL.into_iter().zip(want) {
                assert_eq!(vl.enforcement(v), *w, "{level} {entries:?} {v}");
            }
        }
    }

    #[test]
    fn refuses_overrides_the_spec_forbids() {
        use OverrideError as O;
        let cases: &[(Level, Entries, OverrideError)] = &[
            (Level::Skip, &[("expiry", "log")], O::WithSkip),
            (Level::Strict, &[("integrity", "log")], O::Integrity),
            (Level::Strict, &[("integrity", "enforce")], O::Integrity),
            (
                Level::Strict,
                &[("Expiry", "log")],
                O::UnknownValidation {
                    key: "Expiry".into(),
                },
            ),
            (
                Level::Strict,
                &[("expiry", "warn")],
                O::UnknownAction {
                    validation: Validation::Expiry,
                    value: "warn".into(),
                },
            ),
            (
                Level::Audit,
                &[("authenticity", "skip")],
                O::SkipNotAllowed {
                    validation: Validation::Authenticity,
                },
            ),
            (
                Level::Audit,
                &[("expiry", "log"), ("expiry", "enforce")],
                O::Duplicate {
                    validation: Validation::Expiry,
                },
            ),
        ];
        for (level, entries, want) in cases {
            let got = VerificationLevel::with_overrides(*level, entries.iter().copied());
            assert_eq!(got.as_ref().err(), Some(want), "{level} {entries:?}");
        }
    }

    #[test]
    fn spellings_round_trip() {
        for l in [Level::Strict, Level::Permissive, Level::Audit, Level::Skip] {
            assert_eq!(l.as_str().parse::<Level>(), Ok(l));
        }
        for v in Validation::ALL {
            assert_eq!(v.to_string().parse::<Validation>(), Ok(v));
        }
        for t in [VerifyTimestamp::Always, VerifyTimestamp::AfterCertExpiry] {
            assert_eq!(t.as_str().parse::<VerifyTimestamp>(), Ok(t));
        }
        assert!("Strict".parse::<Level>().is_err());
        assert!("aftercertexpiry".parse::<VerifyTimestamp>().is_err());
    }
}
