//! Evaluation of one signature's check results under a statement's level.
//!
//! Input: the [`Statement`] that applies to the image and the [`Check`]s a
//! verifier reported for one signature. Output: a [`SignatureVerdict`].
//! Pure: the verifier has already run every check (at its own `now`); this
//! only maps each result through the level table and `override`.
//!
//! Rules: checks are evaluated in spec order (integrity first) whatever order
//! they arrive in; a validation that was not reported counts as failed, so a
//! verifier that forgets a check cannot make a signature pass; if one
//! validation is reported several times, any failure is a failure.

use crate::level::{Enforcement, Validation};
use crate::trust_policy::Statement;

/// The result of one validation of one signature, as a verifier reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Check {
    /// Which validation.
    pub validation: Validation,
    /// Whether it passed.
    pub passed: bool,
}

/// What the policy makes of one signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignatureVerdict {
    /// No enforced validation failed; `logged_failures` failed at level `log`.
    Accepted {
        /// Validations that failed but are only logged, in spec order.
        logged_failures: Vec<Validation>,
    },
    /// The enforced validation `by` failed (the first in spec order).
    Rejected {
        /// The first enforced validation that failed (or was not reported).
        by: Validation,
        /// Validations that failed at level `log`, in spec order.
        logged_failures: Vec<Validation>,
    },
}

impl SignatureVerdict {
    /// Whether the signature is accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted { .. })
    }
}

/// Applies `statement`'s level and overrides to one signature's `checks`.
pub fn evaluate_signature(statement: &Statement, checks: &[Check]) -> SignatureVerdict {
    // "If a validation is *enforced*, a failure is treated as critical
    //  failure, and causes the overall signature verification to fail.
    //  If a validation is *logged*, a failure causes details to be logged,
    //  and the next validation is evaluated till all validations succeed or
    //  a critical failure is encountered."
    // https://github.com/notaryproject/specifications/blob/main/specs/trust-store-trust-policy.md#signature-verification-details
    let mut logged_failures = Vec::new();
    let mut rejected_by = None;
    for validation in Validation::ALL {
        let mut reported = checks.iter().filter(|c| c.validation == validation);
        let failed = reported.clone().next().is_none() || reported.any(|c| !c.passed);
        if !failed {
            continue;
        }
        match statement.enforcement(validation) {
            Enforcement::Enforce => {
                rejected_by.get_or_insert(validation);
            }
            Enforcement::Log => logged_failures.push(validation),
            Enforcement::Skip => {}
        }
    }
    match rejected_by {
        Some(by) => SignatureVerdict::Rejected {
            by,
            logged_failures,
        },
        None => SignatureVerdict::Accepted { logged_failures },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust_policy::TrustPolicyDocument;
    use Validation::{
        AuthenticTimestamp as Ts, Authenticity as Au, Expiry as Ex, Integrity as In,
        Revocation as Re,
    };

    fn statement(level: &str, overrides: &str) -> Statement {
        let (stores, ids) = if level == "skip" {
            ("", "")
        } else {
            (
                r#","trustStores":["ca:s"]"#,
                r#","trustedIdentities":["*"]"#,
            )
        };
        let json = format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["*"],
            "signatureVerification":{{"level":"{level}"{overrides}}}{stores}{ids}}}]}}"#
        );
        let doc = TrustPolicyDocument::from_json(json.as_bytes()).unwrap();
        doc.statements()[0].clone()
    }

    fn checks(failed: &[Validation]) -> Vec<Check> {
        Validation::ALL
            .into_iter()
            .map(|validation| Check {
                validation,
                passed: !failed.contains(&validation),
            })
            .collect()
    }

    fn accepted(logged: &[Validation]) -> SignatureVerdict {
        SignatureVerdict::Accepted {
            logged_failures: logged.to_vec(),
        }
    }

    fn rejected(by: Validation, logged: &[Validation]) -> SignatureVerdict {
        SignatureVerdict::Rejected {
            by,
            logged_failures: logged.to_vec(),
        }
    }

    #[test]
    fn levels_decide_which_failures_reject() {
        let revocation_skip = r#","override":{"revocation":"skip","expiry":"log"}"#;
        let audit_enforce_authenticity = r#","override":{"authenticity":"enforce"}"#;
        let cases: &[(&str, &str, &[Validation], SignatureVerdict)] = &[
            ("strict", "", &[], accepted(&[])),
            ("strict", "", &[Ex], rejected(Ex, &[])),
            ("strict", "", &[Re, Ex], rejected(Ex, &[])),
            ("strict", "", &[In, Au], rejected(In, &[])),
            ("permissive", "", &[Ex, Re, Ts], accepted(&[Ts, Ex, Re])),
            ("permissive", "", &[Au, Ex], rejected(Au, &[Ex])),
            ("audit", "", &[Au, Ts, Ex, Re], accepted(&[Au, Ts, Ex, Re])),
            ("audit", "", &[In, Au], rejected(In, &[Au])),
            (
                "audit",
                audit_enforce_authenticity,
                &[Au],
                rejected(Au, &[]),
            ),
            ("strict", revocation_skip, &[Re, Ex], accepted(&[Ex])),
            ("strict", revocation_skip, &[Ts], rejected(Ts, &[])),
            ("skip", "", &[In, Au, Ts, Ex, Re], accepted(&[])),
        ];
        for (level, overrides, failed, want) in cases {
            let got = evaluate_signature(&statement(level, overrides), &checks(failed));
            assert_eq!(&got, want, "{level}{overrides} failed={failed:?}");
        }
    }

    #[test]
    fn missing_and_repeated_checks_fail_closed() {
        let strict = statement("strict", "");
        let only_integrity = [Check {
            validation: In,
            passed: true,
        }];
        assert_eq!(
            evaluate_signature(&strict, &only_integrity),
            rejected(Au, &[])
        );
        assert_eq!(evaluate_signature(&strict, &[]), rejected(In, &[]));
        let audit = statement("audit", "");
        assert_eq!(
            evaluate_signature(&audit, &only_integrity),
            accepted(&[Au, Ts, Ex, Re])
        );
        let mut twice = checks(&[]);
        twice.push(Check {
            validation: Au,
            passed: false,
        });
        assert_eq!(evaluate_signature(&strict, &twice), rejected(Au, &[]));
        // Order of reporting does not matter.
        let mut reversed = checks(&[Re, Ex]);
        reversed.reverse();
        assert_eq!(evaluate_signature(&strict, &reversed), rejected(Ex, &[]));
    }
}
