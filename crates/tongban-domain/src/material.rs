//! What a material's metadata must be: checked at intake (the clerk's attach)
//! and at admission (a document from a peer), so that a file name or a media
//! type written by another office can never carry control characters, a path,
//! or an empty file into a reviewer's hands.

/// Media types an office may attach: scans and photographs of documents, and
/// PDF or OFD (the national format for electronic documents) files.
pub const MEDIA_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/tiff",
    "image/bmp",
    "image/webp",
    "image/gif",
    "application/pdf",
    "application/ofd",
];

/// Longest file name, in bytes (as most file systems allow).
pub const MAX_FILE_NAME: usize = 255;

/// Why a material's metadata is refused; each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaterialMetaError {
    /// `file_name` is empty, `.` or `..`.
    #[error("file_name: 文件名为空 the file name is empty")]
    EmptyName,
    /// `file_name` is longer than [`MAX_FILE_NAME`] bytes.
    #[error("file_name: 文件名过长 the file name has {found} bytes; at most {MAX_FILE_NAME}")]
    NameTooLong {
        /// Its length in bytes.
        found: usize,
    },
    /// `file_name` holds a control character.
    #[error("file_name: 文件名含控制字符 the file name holds control character U+{code:04X}")]
    ControlCharacter {
        /// The character's code point.
        code: u32,
    },
    /// `file_name` holds a path separator.
    #[error("file_name: 文件名不能含路径分隔符 the file name holds a path separator {0:?}")]
    PathSeparator(char),
    /// `media_type` is not one of [`MEDIA_TYPES`].
    #[error("media_type: 不支持的文件类型 {found:?}; one of: {}", MEDIA_TYPES.join(", "))]
    UnknownMediaType {
        /// What was given.
        found: String,
    },
    /// `size` is zero.
    #[error("size: 文件为空 the file is empty")]
    Empty,
}

/// Checks a material's file name, media type and size.
pub fn check_material_meta(
    file_name: &str,
    media_type: &str,
    size: u64,
) -> Result<(), MaterialMetaError> {
    if file_name.trim().is_empty() || file_name == "." || file_name == ".." {
        return Err(MaterialMetaError::EmptyName);
    }
    if file_name.len() > MAX_FILE_NAME {
        return Err(MaterialMetaError::NameTooLong {
            found: file_name.len(),
        });
    }
    if let Some(c) = file_name.chars().find(|c| c.is_control()) {
        return Err(MaterialMetaError::ControlCharacter { code: u32::from(c) });
    }
    if let Some(c) = file_name.chars().find(|c| matches!(c, '/' | '\\')) {
        return Err(MaterialMetaError::PathSeparator(c));
    }
    if !MEDIA_TYPES.contains(&media_type) {
        return Err(MaterialMetaError::UnknownMediaType {
            found: media_type.chars().take(64).collect(),
        });
    }
    if size == 0 {
        return Err(MaterialMetaError::Empty);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_names_its_field() {
        let ok = check_material_meta("身份证正面.jpg", "image/jpeg", 10);
        assert_eq!(ok, Ok(()));
        let cases = [
            ("", "image/jpeg", 1, "file_name"),
            ("..", "image/jpeg", 1, "file_name"),
            ("a\u{1b}[31m.jpg", "image/jpeg", 1, "file_name"),
            ("../etc/passwd", "image/jpeg", 1, "file_name"),
            ("a\\b.pdf", "application/pdf", 1, "file_name"),
            ("scan.exe", "application/x-msdownload", 1, "media_type"),
            ("scan.pdf", "application/pdf", 0, "size"),
        ];
        for (name, media, size, field) in cases {
            let err = check_material_meta(name, media, size).unwrap_err();
            assert!(err.to_string().starts_with(field), "{name:?}: {err}");
        }
        let long = "长".repeat(100);
        assert!(matches!(
            check_material_meta(&long, "image/png", 1),
            Err(MaterialMetaError::NameTooLong { found: 300 })
        ));
    }
}
