//! `[[scope.attestations]]`: signed in-toto attestations an image must
//! carry, and conditions on what they attest, written in CEL.
//!
//! ```toml
//! [[scope.attestations]]
//! predicate_type = "https://slsa.dev/provenance/v1"
//! conditions = [
//!   'predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app"',
//! ]
//! ```
//!
//! An attestation counts when it is signed by a signer of the scope: a key
//! or keyless identity of its `[scope.cosign]` table (judged as a cosign
//! signature is), or, when its `signature_kinds` list "notation", a Notary
//! Project signature of the attestation that the trust policy statement
//! accepts; its in-toto statement names the image's digest among its
//! subjects and has exactly this predicate type; and every condition
//! evaluates to `true` on it. Each requirement needs one such attestation.
//!
//! Conditions are [CEL](https://github.com/google/cel-spec) expressions
//! (the `cel` crate), compiled when the requirements load, so a syntax
//! error or an unknown variable refuses the file. Variables:
//! - `predicate`: the statement's `predicate` (JSON as CEL maps, lists,
//!   strings, numbers, booleans and null);
//! - `predicateType`: the statement's predicate type (a string);
//! - `subject`: the statement's `subject` list;
//! - `now`: the time of the decision (a CEL timestamp), e.g.
//!   `now - timestamp(predicate.scanner.result.timestamp) < duration("168h")`.
//!
//! A condition that evaluates to anything but `true` (false, another type,
//! or an evaluation error such as a missing field) fails, and the denial
//! says which. Evaluation is pure: `now` is an argument.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;

/// The variables a condition may use.
pub const VARIABLES: [&str; 4] = ["predicate", "predicateType", "subject", "now"];

/// Most conditions one attestation requirement may have.
pub const MAX_CONDITIONS: usize = 32;

/// Longest condition source accepted, in bytes.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// Longest predicate type accepted, in bytes.
pub const MAX_PREDICATE_TYPE_BYTES: usize = 512;

/// One validated `[[scope.attestations]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationRequirement {
    predicate_type: String,
    conditions: Vec<Condition>,
}

/// One compiled CEL condition, with its source (compared by source).
#[derive(Clone)]
pub struct Condition {
    source: String,
    program: Arc<cel::Program>,
    uses_now: bool,
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Condition").field(&self.source).finish()
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Condition {}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// What is wrong with a `[[scope.attestations]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestationProblem {
    /// `predicate_type` empty or too long.
    #[error("[[scope.attestations]] has predicate_type {predicate_type:?}; it must be 1 to {MAX_PREDICATE_TYPE_BYTES} bytes")]
    PredicateType {
        /// As written (cut to 80 characters).
        predicate_type: String,
    },
    /// The same predicate type required twice in one scope.
    #[error("[[scope.attestations]] lists predicate_type {predicate_type:?} twice; put its conditions in one entry")]
    DuplicatePredicateType {
        /// As written.
        predicate_type: String,
    },
    /// More conditions than [`MAX_CONDITIONS`].
    #[error("[[scope.attestations]] {predicate_type:?} has {count} conditions, over the limit of {MAX_CONDITIONS}")]
    TooManyConditions {
        /// The entry's predicate type.
        predicate_type: String,
        /// How many.
        count: usize,
    },
    /// A condition longer than [`MAX_CONDITION_BYTES`].
    #[error("[[scope.attestations]] {predicate_type:?} has a condition of {len} bytes, over the limit of {MAX_CONDITION_BYTES}")]
    ConditionTooLong {
        /// The entry's predicate type.
        predicate_type: String,
        /// Its length.
        len: usize,
    },
    /// A condition is not valid CEL.
    #[error("[[scope.attestations]] {predicate_type:?} has condition {condition:?}, which is not valid CEL: {reason}")]
    Syntax {
        /// The entry's predicate type.
        predicate_type: String,
        /// As written.
        condition: String,
        /// The parser's message.
        reason: String,
    },
    /// A condition names a variable other than [`VARIABLES`].
    #[error("[[scope.attestations]] {predicate_type:?} has condition {condition:?}, which uses variable {variable:?}; the variables are predicate, predicateType, subject and now")]
    UnknownVariable {
        /// The entry's predicate type.
        predicate_type: String,
        /// As written.
        condition: String,
        /// The unknown name.
        variable: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttestation {
    predicate_type: String,
    #[serde(default)]
    conditions: Vec<String>,
}

impl AttestationRequirement {
    /// Validates the `[[scope.attestations]]` entries of one scope.
    pub(crate) fn from_raw_list(raw: Vec<RawAttestation>) -> Result<Vec<Self>, AttestationProblem> {
        let mut out: Vec<Self> = Vec::with_capacity(raw.len());
        for r in raw {
            let a = Self::from_raw(r)?;
            if out.iter().any(|o| o.predicate_type == a.predicate_type) {
                return Err(AttestationProblem::DuplicatePredicateType {
                    predicate_type: a.predicate_type,
                });
            }
            out.push(a);
        }
        Ok(out)
    }

    fn from_raw(raw: RawAttestation) -> Result<Self, AttestationProblem> {
        let pt = raw.predicate_type;
        if pt.trim().is_empty() || pt.len() > MAX_PREDICATE_TYPE_BYTES {
            return Err(AttestationProblem::PredicateType {
                predicate_type: pt.chars().take(80).collect(),
            });
        }
        if raw.conditions.len() > MAX_CONDITIONS {
            return Err(AttestationProblem::TooManyConditions {
                predicate_type: pt,
                count: raw.conditions.len(),
            });
        }
        let mut conditions = Vec::with_capacity(raw.conditions.len());
        for source in raw.conditions {
            conditions.push(Condition::compile(&pt, source)?);
        }
        Ok(Self {
            predicate_type: pt,
            conditions,
        })
    }

    /// The in-toto predicate type required, compared exactly.
    pub fn predicate_type(&self) -> &str {
        &self.predicate_type
    }

    /// The conditions every one of which the attestation must meet.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// Whether a condition uses `now`: the result may change with time alone.
    pub fn uses_now(&self) -> bool {
        self.conditions.iter().any(|c| c.uses_now)
    }

    /// The first condition `facts` do not meet at `now`, with why.
    ///
    /// # Errors
    /// The condition and its [`ConditionFailure`].
    pub fn evaluate<'a>(
        &'a self,
        facts: &StatementFacts,
        now: SystemTime,
    ) -> Result<(), (&'a Condition, ConditionFailure)> {
        let context = facts.context(now);
        for c in &self.conditions {
            c.run(&context).map_err(|f| (c, f))?;
        }
        Ok(())
    }
}

impl fmt::Display for AttestationRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attestation {}", self.predicate_type)?;
        for (i, c) in self.conditions.iter().enumerate() {
            f.write_str(if i == 0 { " where " } else { " && " })?;
            write!(f, "({c})")?;
        }
        Ok(())
    }
}

impl Condition {
    /// Compiles `source`, refusing syntax errors and unknown variables.
    fn compile(predicate_type: &str, source: String) -> Result<Self, AttestationProblem> {
        if source.len() > MAX_CONDITION_BYTES {
            return Err(AttestationProblem::ConditionTooLong {
                predicate_type: predicate_type.to_owned(),
                len: source.len(),
            });
        }
        let program = cel::Program::compile(&source).map_err(|e| AttestationProblem::Syntax {
            predicate_type: predicate_type.to_owned(),
            condition: source.clone(),
            reason: e.to_string(),
        })?;
        let mut free = Vec::new();
        free_variables(program.expression(), &mut Vec::new(), &mut free);
        if let Some(unknown) = free.iter().find(|v| !VARIABLES.contains(v)) {
            return Err(AttestationProblem::UnknownVariable {
                predicate_type: predicate_type.to_owned(),
                condition: source.clone(),
                variable: (*unknown).to_owned(),
            });
        }
        let uses_now = free.contains(&"now");
        Ok(Self {
            source,
            program: Arc::new(program),
            uses_now,
        })
    }

    /// The condition as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether it uses `now`.
    pub fn uses_now(&self) -> bool {
        self.uses_now
    }

    fn run(&self, context: &cel::Context<'_, '_>) -> Result<(), ConditionFailure> {
        match self.program.execute(context) {
            Ok(cel::Value::Bool(true)) => Ok(()),
            Ok(cel::Value::Bool(false)) => Err(ConditionFailure::False),
            Ok(other) => Err(ConditionFailure::NotABool {
                got: format!("{:?}", other.type_of()).to_lowercase(),
            }),
            Err(e) => Err(ConditionFailure::Error {
                message: e.to_string().chars().take(256).collect(),
            }),
        }
    }
}

/// Collects the identifiers of `expr` not bound by a comprehension around
/// them (`subject.exists(s, ...)` binds `s`): the variables it reads.
/// Recursion is bounded by the parser's nesting limit.
fn free_variables<'e>(expr: &'e cel::IdedExpr, bound: &mut Vec<&'e str>, out: &mut Vec<&'e str>) {
    use cel::common::ast::{EntryExpr, Expr};
    match &expr.expr {
        Expr::Unspecified | Expr::Literal(_) => {}
        // `@`-names are the macros' own accumulators.
        Expr::Ident(name) => {
            if !name.starts_with('@') && !bound.contains(&name.as_str()) {
                out.push(name);
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                free_variables(target, bound, out);
            }
            for arg in &call.args {
                free_variables(arg, bound, out);
            }
        }
        Expr::Comprehension(c) => {
            free_variables(&c.iter_range, bound, out);
            free_variables(&c.accu_init, bound, out);
            let depth = bound.len();
            bound.push(&c.iter_var);
            bound.push(&c.accu_var);
            if let Some(v) = &c.iter_var2 {
                bound.push(v);
            }
            for e in [&c.loop_cond, &c.loop_step, &c.result] {
                free_variables(e, bound, out);
            }
            bound.truncate(depth);
        }
        Expr::List(list) => {
            for e in &list.elements {
                free_variables(e, bound, out);
            }
        }
        Expr::Select(select) => free_variables(&select.operand, bound, out),
        Expr::Map(cel::common::ast::MapExpr { entries })
        | Expr::Struct(cel::common::ast::StructExpr { entries, .. }) => {
            for entry in entries {
                match &entry.expr {
                    EntryExpr::StructField(field) => free_variables(&field.value, bound, out),
                    EntryExpr::MapEntry(e) => {
                        free_variables(&e.key, bound, out);
                        free_variables(&e.value, bound, out);
                    }
                }
            }
        }
    }
}

/// Why a condition does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConditionFailure {
    /// It evaluated to `false`.
    #[error("it evaluated to false")]
    False,
    /// It evaluated to a value that is not a boolean.
    #[error("it evaluated to a {got}, not a bool")]
    NotABool {
        /// The CEL type of the result.
        got: String,
    },
    /// Evaluation failed (a missing field, a type mismatch).
    #[error("it could not be evaluated: {message}")]
    Error {
        /// The evaluator's message (cut to 256 characters).
        message: String,
    },
}

/// What a verified in-toto statement says, as conditions see it.
#[derive(Debug, Clone)]
pub struct StatementFacts {
    predicate_type: cel::Value,
    subject: cel::Value,
    predicate: cel::Value,
}

/// The statement's JSON cannot be given to CEL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the statement cannot be read by the conditions: {0}")]
pub struct FactsError(String);

impl StatementFacts {
    /// The facts of a statement: its predicate type, `subject` and `predicate` JSON.
    ///
    /// # Errors
    /// A value CEL cannot represent.
    pub fn new(
        predicate_type: &str,
        subject: &serde_json::Value,
        predicate: &serde_json::Value,
    ) -> Result<Self, FactsError> {
        let value = |v: &serde_json::Value| cel::to_value(v).map_err(|e| FactsError(e.to_string()));
        Ok(Self {
            predicate_type: cel::Value::from(predicate_type.to_owned()),
            subject: value(subject)?,
            predicate: value(predicate)?,
        })
    }

    fn context(&self, now: SystemTime) -> cel::Context<'_, '_> {
        let mut context = cel::Context::default();
        let now = chrono::DateTime::<chrono::Utc>::from(now).fixed_offset();
        context.add_variable_from_value("now", cel::Value::Timestamp(now));
        context.add_variable_from_value("predicateType", self.predicate_type.clone());
        context.add_variable_from_value("subject", self.subject.clone());
        context.add_variable_from_value("predicate", self.predicate.clone());
        context
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn requirement(conditions: &[&str]) -> Result<AttestationRequirement, AttestationProblem> {
        AttestationRequirement::from_raw(RawAttestation {
            predicate_type: "https://slsa.dev/provenance/v1".to_owned(),
            conditions: conditions.iter().map(|c| (*c).to_owned()).collect(),
        })
    }

    fn facts(predicate: serde_json::Value) -> StatementFacts {
        StatementFacts::new(
            "https://slsa.dev/provenance/v1",
            &serde_json::json!([{"name": "r.example/app", "digest": {"sha256": "ab"}}]),
            &predicate,
        )
        .unwrap()
    }

    const REPO: &str = r#"predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app""#;

    fn provenance(repository: &str) -> serde_json::Value {
        serde_json::json!({"buildDefinition": {"externalParameters": {"workflow": {"repository": repository}}}})
    }

    const T0: u64 = 1_800_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn conditions_evaluate_true_false_and_error() {
        let r = requirement(&[REPO]).unwrap();
        assert!(!r.uses_now());
        assert_eq!(
            r.evaluate(&facts(provenance("https://github.com/acme/app")), at(T0)),
            Ok(())
        );
        let (c, why) = r
            .evaluate(&facts(provenance("https://github.com/evil/app")), at(T0))
            .unwrap_err();
        assert_eq!(c.as_str(), REPO);
        assert_eq!(why, ConditionFailure::False);
        // A missing field is an evaluation error, not a pass.
        let (_, why) = r
            .evaluate(&facts(serde_json::json!({"buildDefinition": {}})), at(T0))
            .unwrap_err();
        assert!(matches!(why, ConditionFailure::Error { .. }), "{why:?}");
        // Not a boolean.
        let r = requirement(&["predicate.buildDefinition"]).unwrap();
        let (_, why) = r.evaluate(&facts(provenance("x")), at(T0)).unwrap_err();
        assert!(matches!(why, ConditionFailure::NotABool { .. }), "{why:?}");
    }

    #[test]
    fn every_variable_is_bound() {
        let r = requirement(&[
            r#"predicateType == "https://slsa.dev/provenance/v1""#,
            r#"subject.exists(s, s.name == "r.example/app")"#,
            r#"size(subject) == 1"#,
            r#"subject.all(s, subject.exists(t, t.name == s.name))"#,
        ])
        .unwrap();
        assert_eq!(r.evaluate(&facts(provenance("x")), at(T0)), Ok(()));
    }

    #[test]
    fn a_time_condition_reads_now() {
        let r = requirement(&[
            r#"now - timestamp(predicate.scanner.result.timestamp) < duration("168h")"#,
        ])
        .unwrap();
        assert!(r.uses_now());
        let scanned = chrono::DateTime::<chrono::Utc>::from(at(T0 - 2 * 86_400)).to_rfc3339();
        let f = facts(serde_json::json!({"scanner": {"result": {"timestamp": scanned}}}));
        assert_eq!(r.evaluate(&f, at(T0)), Ok(()));
        let (_, why) = r.evaluate(&f, at(T0 + 6 * 86_400)).unwrap_err();
        assert_eq!(why, ConditionFailure::False);
    }

    #[test]
    fn bad_conditions_are_refused_at_load() {
        assert!(matches!(
            requirement(&["predicate.x == "]),
            Err(AttestationProblem::Syntax { .. })
        ));
        for (condition, unknown) in [
            ("request.x == 1", "request"),
            // `s` is bound only inside the comprehension.
            ("subject.exists(s, true) && s.name == \"x\"", "s"),
        ] {
            assert!(
                matches!(
                    requirement(&[condition]),
                    Err(AttestationProblem::UnknownVariable { variable, .. }) if variable == unknown
                ),
                "{condition}"
            );
        }
        let long = format!("predicate.x == \"{}\"", "a".repeat(MAX_CONDITION_BYTES));
        assert!(matches!(
            requirement(&[long.as_str()]),
            Err(AttestationProblem::ConditionTooLong { .. })
        ));
        let many = vec!["true"; MAX_CONDITIONS + 1];
        assert!(matches!(
            requirement(&many),
            Err(AttestationProblem::TooManyConditions { .. })
        ));
        assert!(matches!(
            AttestationRequirement::from_raw(RawAttestation {
                predicate_type: " ".to_owned(),
                conditions: Vec::new()
            }),
            Err(AttestationProblem::PredicateType { .. })
        ));
    }
}
