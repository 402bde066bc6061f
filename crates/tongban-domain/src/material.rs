//! What a material's metadata may be: the file name the clerk attached, its media
//! type and its size, as a case document records them (`materials` in
//! `docs/case-schema.md`).
//!
//! One pure rule, [`check_material_meta`], that every path storing a material
//! asks before anything is stored: the node's `case attach` (the CLI and the
//! control API) and, on sync, admission of a document that lists materials.
//! Each error names the field at fault.

use thiserror::Error;

/// The largest material, in bytes: 64 MiB, a scan or a document of many pages.
/// The node's control API accepts no larger upload, and a syncing node fetches
/// no larger material (the sync layer's default `max_material_bytes`).
pub const MAX_MATERIAL_BYTES: u64 = 64 * 1024 * 1024;

/// The longest file name, in bytes of UTF-8 (what common file systems allow).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// The media types a material may have: scans (JPEG, PNG, TIFF, BMP, WebP) and
/// documents (PDF, and OFD, GB/T 33190, the fixed-layout format of Chinese
/// government documents). Written as here, in lower case, without parameters.
pub const MEDIA_TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/tiff",
    "image/bmp",
    "image/webp",
    "application/pdf",
    "application/ofd",
];

/// Why a material's metadata was refused. Each names its field (`file_name`,
/// `media_type`, `size`); none repeats the file name, which may carry the
/// applicant's name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MaterialMetaError {
    /// The file name is empty.
    #[error("file_name: empty; a material keeps the name of the file attached")]
    FileNameEmpty,
    /// The file name is longer than [`MAX_FILE_NAME_BYTES`].
    #[error("file_name: {len} bytes, more than {MAX_FILE_NAME_BYTES}")]
    FileNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The file name is `.` or `..`.
    #[error("file_name: `.` and `..` are not file names")]
    FileNameDots,
    /// The file name contains a path separator.
    #[error(
        "file_name: contains a path separator ({found:?}) at byte {position}; give the file's own name"
    )]
    FileNamePath {
        /// The separator, `/` or `\`.
        found: char,
        /// Its byte offset.
        position: usize,
    },
    /// The file name contains a control character.
    #[error("file_name: contains a control character ({found:?}) at byte {position}")]
    FileNameControl {
        /// The character.
        found: char,
        /// Its byte offset.
        position: usize,
    },
    /// The media type is not one of [`MEDIA_TYPES`].
    #[error("media_type {found:?} is not a material type: one of {}", MEDIA_TYPES.join(", "))]
    MediaType {
        /// The media type given.
        found: String,
    },
    /// The file is empty.
    #[error("size: the file is empty")]
    Empty,
    /// The file is larger than [`MAX_MATERIAL_BYTES`].
    #[error("size: {size} bytes, more than the {MAX_MATERIAL_BYTES} bytes (64 MiB) of a material")]
    TooLarge {
        /// Its size in bytes.
        size: u64,
    },
}

/// Checks a material's metadata: a file name (non-empty, at most
/// [`MAX_FILE_NAME_BYTES`] bytes, not `.` or `..`, without `/`, `\` or control
/// characters), a media type of [`MEDIA_TYPES`], and a size of 1 to
/// [`MAX_MATERIAL_BYTES`] bytes. The first rule broken is reported, in that order.
pub fn check_material_meta(
    file_name: &str,
    media_type: &str,
    size: u64,
) -> Result<(), MaterialMetaError> {
    if file_name.is_empty() {
        return Err(MaterialMetaError::FileNameEmpty);
    }
    if file_name.len() > MAX_FILE_NAME_BYTES {
        return Err(MaterialMetaError::FileNameTooLong {
            len: file_name.len(),
        });
    }
    if file_name == "." || file_name == ".." {
        return Err(MaterialMetaError::FileNameDots);
    }
    if let Some((position, found)) = file_name
        .char_indices()
        .find(|(_, c)| matches!(c, '/' | '\\'))
    {
        return Err(MaterialMetaError::FileNamePath { found, position });
    }
    if let Some((position, found)) = file_name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(MaterialMetaError::FileNameControl { found, position });
    }
    if !MEDIA_TYPES.contains(&media_type) {
        return Err(MaterialMetaError::MediaType {
            found: media_type.to_string(),
        });
    }
    if size == 0 {
        return Err(MaterialMetaError::Empty);
    }
    if size > MAX_MATERIAL_BYTES {
        return Err(MaterialMetaError::TooLarge { size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn refused(file_name: &str, media_type: &str, size: u64, expect: Expect) {
        match check_material_meta(file_name, media_type, size) {
            Ok(()) => panic!("{file_name:?} {media_type:?} {size} was accepted"),
            Err(err) => expect.assert_eq(&err.to_string()),
        }
    }

    #[test]
    fn ordinary_materials_pass() {
        for media_type in MEDIA_TYPES {
            assert_eq!(check_material_meta("scan.jpg", media_type, 1), Ok(()));
        }
        for name in [
            "身份证正面.jpg",
            "a",
            "..pdf",
            ". x",
            "残疾证 (1).PDF",
            &"名".repeat(85),
        ] {
            assert_eq!(
                check_material_meta(name, "application/pdf", MAX_MATERIAL_BYTES),
                Ok(()),
                "{name}"
            );
        }
    }

    #[test]
    fn the_file_name_is_a_plain_name() {
        refused(
            "",
            "image/jpeg",
            10,
            expect!["file_name: empty; a material keeps the name of the file attached"],
        );
        // 255 bytes pass, 256 do not (85 three-byte characters are 255 bytes).
        assert_eq!(
            check_material_meta(&"a".repeat(255), "image/png", 1),
            Ok(())
        );
        refused(
            &"a".repeat(256),
            "image/png",
            1,
            expect!["file_name: 256 bytes, more than 255"],
        );
        refused(
            &format!("{}a", "名".repeat(85)),
            "image/png",
            1,
            expect!["file_name: 256 bytes, more than 255"],
        );
        refused(
            ".",
            "image/png",
            1,
            expect!["file_name: `.` and `..` are not file names"],
        );
        refused(
            "..",
            "image/png",
            1,
            expect!["file_name: `.` and `..` are not file names"],
        );
        refused(
            "../scan.png",
            "image/png",
            1,
            expect![[
                r#"file_name: contains a path separator ('/') at byte 2; give the file's own name"#
            ]],
        );
        refused(
            r"C:\scans\id.png",
            "image/png",
            1,
            expect![[
                r#"file_name: contains a path separator ('\\') at byte 2; give the file's own name"#
            ]],
        );
        refused(
            "id\ncard.png",
            "image/png",
            1,
            expect![[r#"file_name: contains a control character ('\n') at byte 2"#]],
        );
        refused(
            "id\u{7f}.png",
            "image/png",
            1,
            expect![[r#"file_name: contains a control character ('\u{7f}') at byte 2"#]],
        );
        refused(
            "证\u{9b}.png",
            "image/png",
            1,
            expect![[r#"file_name: contains a control character ('\u{9b}') at byte 3"#]],
        );
    }

    #[test]
    fn the_media_type_is_a_known_one() {
        refused(
            "scan.bin",
            "application/octet-stream",
            1,
            expect![[
                r#"media_type "application/octet-stream" is not a material type: one of image/jpeg, image/png, image/tiff, image/bmp, image/webp, application/pdf, application/ofd"#
            ]],
        );
        // Exactly as listed: no other case, no parameters, nothing empty.
        for media_type in ["IMAGE/JPEG", "image/jpeg; q=1", " image/jpeg", "", "image/"] {
            assert!(
                matches!(
                    check_material_meta("scan.jpg", media_type, 1),
                    Err(MaterialMetaError::MediaType { .. })
                ),
                "{media_type:?}"
            );
        }
    }

    #[test]
    fn the_size_is_one_byte_to_the_limit() {
        refused(
            "scan.pdf",
            "application/pdf",
            0,
            expect!["size: the file is empty"],
        );
        assert_eq!(
            check_material_meta("scan.pdf", "application/pdf", MAX_MATERIAL_BYTES),
            Ok(())
        );
        refused(
            "scan.pdf",
            "application/pdf",
            MAX_MATERIAL_BYTES + 1,
            expect!["size: 67108865 bytes, more than the 67108864 bytes (64 MiB) of a material"],
        );
    }

    #[test]
    fn the_first_rule_broken_is_reported() {
        refused(
            "",
            "text/plain",
            0,
            expect!["file_name: empty; a material keeps the name of the file attached"],
        );
        refused(
            "a.txt",
            "text/plain",
            0,
            expect![[
                r#"media_type "text/plain" is not a material type: one of image/jpeg, image/png, image/tiff, image/bmp, image/webp, application/pdf, application/ofd"#
            ]],
        );
    }
}
