//! Where the global `*` statement is weaker than a specific one.
//!
//! Registry scopes are matched on canonical names with loopback aliases
//! folded ([`crate::reference`]), but a registry has names pullgate cannot
//! know: another DNS name, an `/etc/hosts` entry, another address of the
//! host. A pull under such a name falls to `*`. When `*` is weaker than the
//! statement written for the repository, that name is a way around it, so
//! `policy check` says so. Pure: compares two validated statements.

use std::fmt;

use crate::identity::TrustedIdentity;
use crate::level::{Enforcement, Level, TimestampRevocation, Validation, VerifyTimestamp};

use super::{Statement, TrustPolicyDocument, TrustStoreRef};

/// The global `*` statement judges less strictly than a specific statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeakerGlobal {
    /// The `*` statement's name.
    pub global: String,
    /// The specific statement's name.
    pub specific: String,
    /// How `*` is weaker, each way once.
    pub ways: Vec<Weakness>,
}

/// One way a `*` statement is weaker than a specific one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Weakness {
    /// A validation is enforced less (a lower level, or an override).
    Validation {
        /// The validation.
        validation: Validation,
        /// What `*` does on its failure.
        global: Enforcement,
        /// What the specific statement does.
        specific: Enforcement,
    },
    /// `*` trusts stores the specific statement does not.
    OtherTrustStores(Vec<TrustStoreRef>),
    /// `*` trusts identities the specific statement does not.
    WiderIdentities(Vec<TrustedIdentity>),
    /// `*` verifies the timestamp only after the certificate expired.
    TimestampAfterCertExpiry,
    /// `*` skips the timestamp's revocation check.
    TimestampRevocationSkipped,
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Validation {
                validation,
                global,
                specific,
            } => write!(f, "{validation}: {global}, not {specific}"),
            Self::OtherTrustStores(stores) => {
                f.write_str("trusts other trust stores: ")?;
                join(f, stores)
            }
            Self::WiderIdentities(ids) => {
                f.write_str("trusts other identities: ")?;
                join(f, ids)
            }
            Self::TimestampAfterCertExpiry => {
                f.write_str("verifies timestamps only after certificate expiry")
            }
            Self::TimestampRevocationSkipped => f.write_str("skips the timestamp revocation check"),
        }
    }
}

fn join<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl fmt::Display for WeakerGlobal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the global scope \"*\" (statement {:?}) is weaker than statement {:?} (",
            self.global, self.specific
        )?;
        join(f, &self.ways)?;
        write!(
            f,
            "); a pull under another name of one of {:?}'s registries (a DNS alias, another \
             address) is judged by \"*\"",
            self.specific
        )
    }
}

/// How strongly an action enforces: higher is stricter.
fn rank(e: Enforcement) -> u8 {
    match e {
        Enforcement::Enforce => 2,
        Enforcement::Log => 1,
        Enforcement::Skip => 0,
    }
}

impl TrustPolicyDocument {
    /// Every specific statement the `*` statement is weaker than, in document order.
    pub fn weaker_global(&self) -> Vec<WeakerGlobal> {
        let Some(global) = self.statements.iter().find(|s| s.is_global()) else {
            return Vec::new();
        };
        self.statements
            .iter()
            .filter(|s| !s.is_global())
            .filter_map(|specific| {
                let ways = weaknesses(global, specific);
                (!ways.is_empty()).then(|| WeakerGlobal {
                    global: global.name.clone(),
                    specific: specific.name.clone(),
                    ways,
                })
            })
            .collect()
    }
}

fn weaknesses(global: &Statement, specific: &Statement) -> Vec<Weakness> {
    let mut ways = Vec::new();
    // A statement that verifies nothing asks for nothing `*` could lack.
    if specific.level() == Level::Skip {
        return ways;
    }
    for v in Validation::ALL {
        let (g, s) = (global.enforcement(v), specific.enforcement(v));
        if rank(g) < rank(s) {
            ways.push(Weakness::Validation {
                validation: v,
                global: g,
                specific: s,
            });
        }
    }
    let stores: Vec<TrustStoreRef> = global
        .trust_stores
        .iter()
        .filter(|t| !specific.trust_stores.contains(t))
        .cloned()
        .collect();
    if !stores.is_empty() {
        ways.push(Weakness::OtherTrustStores(stores));
    }
    if !specific.trusted_identities.contains(&TrustedIdentity::Any) {
        let ids: Vec<TrustedIdentity> = global
            .trusted_identities
            .iter()
            .filter(|i| !specific.trusted_identities.contains(i))
            .cloned()
            .collect();
        if !ids.is_empty() {
            ways.push(Weakness::WiderIdentities(ids));
        }
    }
    if global.verify_timestamp == VerifyTimestamp::AfterCertExpiry
        && specific.verify_timestamp == VerifyTimestamp::Always
    {
        ways.push(Weakness::TimestampAfterCertExpiry);
    }
    if global.timestamp_revocation == TimestampRevocation::Skip
        && specific.timestamp_revocation == TimestampRevocation::Check
    {
        ways.push(Weakness::TimestampRevocationSkipped);
    }
    ways
}
