//! The control API's protocol: the files a running node keeps in its data
//! directory for it, and the bodies and queries of its routes, shared by the
//! server ([`crate::control`]) and the client ([`crate::client`]).
//! `docs/control-api.md` documents each route.

use serde::{Deserialize, Serialize};
use tongban_case::{IntakeForm, Payload};
use tongban_domain::stage::Stage;

use crate::materials::Missing;

/// The file a running daemon writes its TCP control address into, when `control`
/// is configured (removed on a clean shutdown, and on start). Commands never read
/// it: they reach their node over [`CONTROL_SOCKET_FILE`].
pub const CONTROL_ADDR_FILE: &str = "control.addr";
/// The Unix socket of the control API inside the data directory (mode 0600).
pub const CONTROL_SOCKET_FILE: &str = "control.sock";
/// The file holding the control API's bearer token (mode 0600).
pub const CONTROL_TOKEN_FILE: &str = "control.token";

/// An error body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong.
    pub error: String,
    /// Whether it was the office's input refused by a rule.
    pub rejection: bool,
    /// With a 404: what is missing (the case, a material the case does not
    /// record, or a recorded material's bytes not yet held here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Missing>,
}

/// `POST /v1/cases` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct NewCaseRequest {
    /// The intake form.
    pub form: IntakeForm,
    /// The clerk.
    pub operator: String,
}

/// `POST /v1/cases/{id}/transitions` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct TransitionRequest {
    /// The stage to move to.
    pub to: Stage,
    /// Opinion, outcome, awards, method.
    #[serde(default)]
    pub payload: Payload,
    /// The clerk.
    pub operator: String,
}

/// `POST /v1/cases/{id}/evaluation` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct EvaluationRequest {
    /// 1–5.
    pub score: u8,
    /// The applicant's words.
    #[serde(default)]
    pub comment: String,
    /// The clerk who records it.
    pub operator: String,
}

/// `POST /v1/checks` body: the dynamic check of a county's awards.
#[derive(Debug, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The 6-digit county code.
    pub county: String,
    /// The clerk who runs it.
    pub operator: String,
}

/// `POST /v1/payroll` body: the payroll of a county for a month.
#[derive(Debug, Serialize, Deserialize)]
pub struct PayrollRequest {
    /// The 6-digit county code.
    pub county: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The clerk who makes it.
    pub operator: String,
}

/// `POST /v1/cases/{id}/materials` query.
#[derive(Debug, Serialize, Deserialize)]
pub struct MaterialQuery {
    /// Material kind code of the policy.
    pub kind: String,
    /// Media type (default from the file name).
    #[serde(default)]
    pub media_type: Option<String>,
    /// The original file name.
    #[serde(default)]
    pub file_name: Option<String>,
    /// The clerk who attaches it.
    pub operator: String,
}

/// `POST /v1/backup` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct BackupRequest {
    /// Where the node writes the backup file (an absolute path on the node's
    /// machine; it must not exist).
    pub out: std::path::PathBuf,
}

/// `POST /v1/export` body.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportRequest {
    /// The directory the node writes the export into (an absolute path on
    /// the node's machine: new, empty, or an earlier export).
    pub out: std::path::PathBuf,
    /// The region: a division code prefix, `00` for the country.
    pub region: String,
}

/// `POST /v1/directory` query.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DirectoryQuery {
    /// The authority's public key (64 hex digits), when the importer names one:
    /// it must be the key the node trusts.
    #[serde(default)]
    pub authority: Option<String>,
}

/// `POST /v1/directory` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct DirectoryImported {
    /// The version the node now holds.
    pub version: u64,
}

/// `POST /v1/datasets` and `POST /v1/feeds/{kind}` answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct DatasetImported {
    /// The version the node now holds.
    pub version: u64,
}

/// The largest signed dataset or feed CSV the control API takes.
pub const MAX_DATASET_BODY: usize = 32 * 1024 * 1024;

/// `GET /v1/cases/{id}/archive` query.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ArchiveQuery {
    /// Include the scanned materials' bytes (the node must hold every one).
    #[serde(default)]
    pub with_materials: bool,
}

/// `GET /v1/cases` query.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ListQuery {
    /// Only this stage (code).
    #[serde(default)]
    pub stage: Option<Stage>,
}
