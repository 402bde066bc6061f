//! The one place a command's failure becomes what the user sees and the exit
//! status: 0 success, 1 input rejected by a rule or the command failed, 2 usage
//! error, 3 a material the case records but this node does not hold yet
//! (`docs/cli.md`), 4 an award refused as a duplicate. A command builds a
//! [`Failure`] (from a typed library
//! error or from its own check of an argument) and [`Failure::report`] prints it
//! — as text on stderr, and, when the command was given `--json`, also as one
//! JSON object on stdout — and answers the exit status from
//! [`Kind::exit_status`].

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tongban_node::local::NodeError;

/// Whether the command was given `--json`: errors are then JSON on stdout.
static JSON: AtomicBool = AtomicBool::new(false);

/// Errors are printed as JSON from now on (the command was given `--json`).
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::SeqCst);
}

/// What kind of failure, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The input is refused by a rule of the command line or the domain (a bad
    /// id, a date out of range, a missing `--data-dir`): the message names the
    /// field or rule.
    Rejected,
    /// The node refused the office's request by a rule (the stage table, the
    /// write-rights table, a missing material, an unknown case).
    Refused,
    /// The node refused an award because the person holds the same subsidy,
    /// or applied for it first, in another case (防止重复享受): the message
    /// names that case.
    Duplicate,
    /// The command failed (a damaged file, a store error, the node stopped).
    Failed,
    /// What was asked for exists but has not reached this node yet (a material
    /// the case records whose bytes sync has not fetched): try again later.
    NotYetHeld,
    /// The command line is malformed (clap's error).
    Usage,
}

impl Kind {
    /// The exit status of this kind of failure: the one mapping.
    pub fn exit_status(self) -> u8 {
        match self {
            Kind::Rejected | Kind::Refused | Kind::Failed => 1,
            Kind::Usage => 2,
            Kind::NotYetHeld => 3,
            Kind::Duplicate => 4,
        }
    }

    /// How the text form starts.
    fn label(self) -> &'static str {
        match self {
            Kind::Rejected => "输入有误 rejected",
            Kind::Refused => "拒绝 refused",
            Kind::Duplicate => "拒绝 refused",
            Kind::Failed => "错误 error",
            Kind::Usage => "用法错误 usage",
            Kind::NotYetHeld => "尚未同步 not yet held",
        }
    }
}

/// A command's failure.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// What kind.
    pub kind: Kind,
    /// The exit status (from [`Kind::exit_status`]).
    pub code: u8,
    /// What went wrong, naming the rule or field.
    pub message: String,
    /// The argument or form field at fault, when one is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every field at fault, when several are (an intake form).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldFault>,
    /// What the command was doing, when it says (Chinese, then English).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
}

/// One field of a refused form.
#[derive(Debug, Clone, Serialize)]
pub struct FieldFault {
    /// The field's name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl Failure {
    fn new(kind: Kind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            code: kind.exit_status(),
            message: message.into(),
            field: None,
            fields: Vec::new(),
            context: None,
        }
    }

    /// Input refused by a rule.
    pub fn rejected(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Rejected, message)
    }

    /// Input refused, naming the argument at fault (`--operator`, `DATE`).
    pub fn field(field: &str, message: impl std::fmt::Display) -> Failure {
        Failure {
            field: Some(field.to_string()),
            ..Failure::new(Kind::Rejected, format!("{field}: {message}"))
        }
    }

    /// The same failure, naming the argument at fault without changing the
    /// message (which names it already, or names the value).
    pub fn at(mut self, field: &str) -> Failure {
        self.field = Some(field.to_string());
        self
    }

    /// The same failure, naming the argument at fault in its field and in its
    /// message (unless the message names it already).
    pub fn naming(mut self, field: &str) -> Failure {
        if !self.message.contains(field) {
            self.message = format!("{field}: {}", self.message);
        }
        self.field = Some(field.to_string());
        self
    }

    /// The command failed.
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Failed, message)
    }

    /// A malformed command line.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Kind::Usage, message)
    }

    /// The same failure, said to have happened while doing `context`
    /// ("备份失败 backup failed").
    pub fn during(mut self, context: &str) -> Failure {
        self.context = Some(context.to_string());
        self
    }

    /// Prints the failure as text on stderr and, after `--json`, also as one
    /// JSON object on stdout (where the command's result would have gone);
    /// answers its exit status.
    pub fn report(self) -> ExitCode {
        if JSON.load(Ordering::SeqCst) {
            let text = serde_json::to_string_pretty(&ErrorObject { error: &self })
                .unwrap_or_else(|_| format!("{{\"error\": {{\"message\": {:?}}}}}", self.message));
            println!("{text}");
        }
        match &self.context {
            Some(context) => eprintln!("{context}: {}", self.message),
            None => eprintln!("{}: {}", self.kind.label(), self.message),
        }
        ExitCode::from(self.code)
    }
}

/// `{"error": {...}}`: what `--json` prints on failure.
#[derive(Serialize)]
struct ErrorObject<'a> {
    error: &'a Failure,
}

impl From<&NodeError> for Failure {
    fn from(err: &NodeError) -> Failure {
        let kind = if matches!(err, NodeError::Duplicate(_)) {
            Kind::Duplicate
        } else if err.is_rejection() {
            Kind::Refused
        } else {
            Kind::Failed
        };
        let mut failure = Failure::new(kind, err.to_string());
        if let NodeError::Invalid(faults) = err {
            failure.kind = Kind::Rejected;
            failure.fields = faults
                .iter()
                .map(|f| FieldFault {
                    field: f.field.to_string(),
                    message: f.message.clone(),
                })
                .collect();
            if let [only] = faults.as_slice() {
                failure.field = Some(only.field.to_string());
            }
        }
        failure
    }
}

impl From<NodeError> for Failure {
    fn from(err: NodeError) -> Failure {
        Failure::from(&err)
    }
}

impl From<tongban_node::archive::ExportError> for Failure {
    fn from(err: tongban_node::archive::ExportError) -> Failure {
        match err {
            tongban_node::archive::ExportError::Node(err) => Failure::from(&err),
            err if err.is_rejection() => Failure::new(Kind::Refused, err.to_string()),
            err => Failure::failed(err.to_string()),
        }
    }
}

impl From<&tongban_node::materials::MaterialError> for Failure {
    fn from(err: &tongban_node::materials::MaterialError) -> Failure {
        use tongban_node::materials::{MaterialError, Missing};
        match err {
            MaterialError::Node(err) => Failure::from(err),
            err if err.missing() == Some(Missing::MaterialNotHeld) => {
                Failure::new(Kind::NotYetHeld, err.to_string())
            }
            err if err.is_rejection() => Failure::new(Kind::Refused, err.to_string()),
            err => Failure::failed(err.to_string()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::failed(format!("{err:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_follow_the_documented_table() {
        assert_eq!(Kind::Rejected.exit_status(), 1);
        assert_eq!(Kind::Refused.exit_status(), 1);
        assert_eq!(Kind::Failed.exit_status(), 1);
        assert_eq!(Kind::Usage.exit_status(), 2);
        assert_eq!(Kind::NotYetHeld.exit_status(), 3);
    }

    #[test]
    fn a_material_not_yet_held_has_its_own_status() {
        use tongban_node::materials::{MaterialError, Missing};
        let remote = MaterialError::Remote {
            message: "材料尚未同步到本节点".into(),
            missing: Missing::MaterialNotHeld,
        };
        let failure = Failure::from(&remote);
        assert_eq!((failure.kind, failure.code), (Kind::NotYetHeld, 3));
        let unrecorded = MaterialError::Remote {
            message: "案件未记录该材料".into(),
            missing: Missing::Material,
        };
        assert_eq!(Failure::from(&unrecorded).code, 1);
        assert_eq!(Kind::Duplicate.exit_status(), 4);
        let duplicate = Failure::from(&NodeError::Duplicate("重复享受".into()));
        assert_eq!((duplicate.kind, duplicate.code), (Kind::Duplicate, 4));
    }

    #[test]
    fn a_refused_form_names_each_field() {
        let err = NodeError::Invalid(vec![tongban_case::FieldError {
            field: "id",
            message: "check character".into(),
        }]);
        let failure = Failure::from(&err);
        assert_eq!(failure.kind, Kind::Rejected);
        assert_eq!(failure.field.as_deref(), Some("id"));
        let json = serde_json::to_value(ErrorObject { error: &failure }).unwrap_or_default();
        assert_eq!(json["error"]["kind"], "rejected");
        assert_eq!(json["error"]["code"], 1);
        assert_eq!(json["error"]["fields"][0]["field"], "id");
    }
}
