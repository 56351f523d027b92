//! Storage policy: what a volume accepts of a new object's metadata, decided here once for
//! every write path (PutObject, CreateMultipartUpload, CopyObject) rather than in each
//! adapter.

use super::*;

impl Volume {
    /// Refuses user metadata (`x-amz-meta-*`) on a volume whose file system keeps no user
    /// extended attributes: s3vol would have nowhere to keep it, and S3 never drops
    /// metadata silently (SPEC.md "Metadata").
    ///
    /// Errors: [`Error::MetadataUnsupported`].
    pub fn check_metadata(&self, meta: &ObjectMeta) -> Result<()> {
        if !self.xattrs && !meta.user.is_empty() {
            return Err(Error::MetadataUnsupported);
        }
        Ok(())
    }

    /// Refuses a Content-Type not on the volume's `allowed_content_types` list (none
    /// given counts as the empty type; parameters such as `; charset=` are ignored).
    ///
    /// Errors: [`Error::ContentTypeNotAllowed`].
    pub fn check_content_type(&self, meta: &ObjectMeta) -> Result<()> {
        if !self.space.content_type_allowed(meta.content_type.as_deref().unwrap_or("")) {
            return Err(Error::ContentTypeNotAllowed);
        }
        Ok(())
    }
}
