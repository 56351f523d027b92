//! A volume's settings, already validated by the config layer.

/// Per-volume settings, already validated by the config layer.
#[derive(Debug, Clone)]
pub struct VolumeSettings {
    /// Name of the internal directory at the volume root (default `.s3vol`).
    pub internal_dir: String,
    /// fsync file and parent directory before a write is acknowledged (default true).
    pub fsync: bool,
    /// uid:gid given to new files and directories, when set.
    pub owner: Option<(u32, u32)>,
    /// Mode bits of new files (default 0o644).
    pub file_mode: u32,
    /// Mode bits of new directories (default 0o755).
    pub dir_mode: u32,
    /// Refuse to serve unless the path is a mount point.
    pub require_mount: bool,
    /// Quota, maximum object size, allowed content types.
    pub limits: crate::store::quota::Limits,
    /// Largest multipart part accepted, bytes (S3: 5 GiB, the default).
    pub max_part_size: u64,
    /// Smallest multipart part but the last, bytes, judged at Complete (S3: 5 MiB, the
    /// default; see [`crate::store::part_size`]).
    pub min_part_size: u64,
}

/// S3's part size limit: 5 GiB.
pub const DEFAULT_MAX_PART_SIZE: u64 = 5 << 30;

impl Default for VolumeSettings {
    fn default() -> Self {
        Self {
            internal_dir: ".s3vol".into(),
            fsync: true,
            owner: None,
            file_mode: 0o644,
            dir_mode: 0o755,
            require_mount: false,
            limits: crate::store::quota::Limits::default(),
            max_part_size: DEFAULT_MAX_PART_SIZE,
            min_part_size: crate::store::part_size::DEFAULT_MIN_PART_SIZE,
        }
    }
}
