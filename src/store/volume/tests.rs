//! Tests of opening volumes, the internal directory fence and the lookups.

use super::*;

use crate::store::scratch::Scratch;

fn scratch(tag: &str) -> Scratch {
    Scratch::new(&format!("vol-{tag}"))
}

#[test]
fn an_internal_directory_that_is_a_link_refuses_the_volume_and_creates_nothing_outside() {
    let base = scratch("intlink");
    let (vol, outside) = (base.join("vol"), base.join("outside"));
    std::fs::create_dir_all(&vol).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // .s3vol -> outside, -> a missing directory outside, -> a directory inside the volume.
    for target in [outside.clone(), base.join("missing"), vol.join("data")] {
        let _ = std::fs::create_dir(vol.join("data"));
        std::os::unix::fs::symlink(&target, vol.join(".s3vol")).unwrap();
        let err = Volume::open("v", &vol, VolumeSettings::default()).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        std::fs::remove_file(vol.join(".s3vol")).unwrap();
    }
    // .s3vol/tmp or .s3vol/multipart a link.
    for sub in ["tmp", "multipart"] {
        std::fs::create_dir_all(vol.join(".s3vol")).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join(".s3vol").join(sub)).unwrap();
        let err = Volume::open("v", &vol, VolumeSettings::default()).unwrap_err();
        assert!(err.contains(&format!(".s3vol/{sub} is a symbolic link")), "{err}");
        std::fs::remove_dir_all(vol.join(".s3vol")).unwrap();
    }
    // A file where the internal directory should be.
    std::fs::write(vol.join(".s3vol"), b"").unwrap();
    let err = Volume::open("v", &vol, VolumeSettings::default()).unwrap_err();
    assert!(err.contains("not a directory"), "{err}");
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing created outside");
    assert!(!base.join("missing").exists());
    assert_eq!(std::fs::read_dir(vol.join("data")).unwrap().count(), 0);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn delete_bucket_removes_links_in_the_internal_directory_not_their_targets() {
    let base = scratch("delbucket");
    let (root, outside) = (base.join("volumes"), base.join("outside"));
    std::fs::create_dir_all(root.join("bkt")).unwrap();
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("sub/keep.txt"), b"keep").unwrap();
    let vols = Volumes::open(vec![], Some((root.clone(), VolumeSettings::default())));
    assert!(vols.get("bkt").is_ok());
    let internal = root.join("bkt/.s3vol");
    // A pod plants links to the outside at every level s3vol removes.
    std::os::unix::fs::symlink(&outside, internal.join("tmp/out")).unwrap();
    std::fs::create_dir_all(internal.join("multipart/0123456789abcdef0123456789abcdef")).unwrap();
    std::os::unix::fs::symlink(&outside, internal.join("multipart/0123456789abcdef0123456789abcdef/x")).unwrap();
    std::os::unix::fs::symlink(outside.join("sub"), internal.join("sub")).unwrap();
    vols.delete("bkt").unwrap();
    assert!(!root.join("bkt").exists());
    assert_eq!(std::fs::read(outside.join("sub/keep.txt")).unwrap(), b"keep");

    // Deeper than s3vol's own shape: left in place, and the bucket is not empty.
    std::fs::create_dir_all(root.join("bk2")).unwrap();
    let vols = Volumes::open(vec![], Some((root.clone(), VolumeSettings::default())));
    std::fs::create_dir_all(root.join("bk2/.s3vol/multipart/u/deeper")).unwrap();
    assert!(matches!(vols.delete("bk2"), Err(Error::BucketNotEmpty)));
    assert!(root.join("bk2/.s3vol/multipart/u/deeper").is_dir());

    // The bucket's name now holds a link to another directory: refused, nothing removed.
    std::fs::remove_dir_all(root.join("bk2/.s3vol/multipart/u")).unwrap();
    std::fs::rename(root.join("bk2"), base.join("moved")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("bk2")).unwrap();
    assert!(matches!(vols.delete("bk2"), Err(Error::Unavailable)));
    assert!(outside.join("sub/keep.txt").exists() && base.join("moved/.s3vol").is_dir());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn keys_through_links_never_reach_the_internal_directory() {
    let root = scratch("keys");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/f.txt"), b"hello").unwrap();
    let vol = Arc::new(Volume::open("t", &root, VolumeSettings::default()).unwrap());
    std::os::unix::fs::symlink(".", root.join("self")).unwrap();
    std::os::unix::fs::symlink(".s3vol", root.join("link")).unwrap();
    std::fs::write(root.join(".s3vol/tmp/planted"), b"internal").unwrap();
    // A link that stays inside and away from it still works.
    assert_eq!(vol.head(&vol.key("self/d/f.txt").unwrap()).unwrap().size, 5);
    for k in ["self/.s3vol/tmp/planted", "link/tmp/planted", "self/.s3vol/tmp/", "link/"] {
        let key = vol.key(k).unwrap();
        assert!(matches!(vol.head(&key), Err(Error::NotFound)), "{k}");
    }
    for k in ["self/.s3vol/tmp/planted", "link/tmp/planted", "self/.s3vol/", "link/tmp/"] {
        let key = vol.key(k).unwrap();
        assert!(matches!(vol.delete(&key), Err(Error::InternalDir)), "{k}");
    }
    for k in ["self/.s3vol/new/", "link/new/", "self/.s3vol/"] {
        let key = vol.key(k).unwrap();
        assert!(matches!(vol.put_marker(&key), Err(Error::InternalDir)), "{k}");
    }
    assert!(matches!(
        crate::store::write::Writer::begin(vol.clone(), vol.key("self/.s3vol").unwrap(), 1),
        Err(Error::InternalDir)
    ));
    assert_eq!(std::fs::read(root.join(".s3vol/tmp/planted")).unwrap(), b"internal");
    let names = |p: &str| {
        let mut v: Vec<String> =
            std::fs::read_dir(root.join(p)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        v.sort();
        v
    };
    assert_eq!(names(".s3vol"), ["multipart", "tmp"]);
    assert_eq!(names(".s3vol/tmp"), ["planted"]);
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_removed_renamed_or_recreated_directory_is_noticed_by_the_check() {
    let base = scratch("live");
    let (dir, moved) = (base.join("vol"), base.join("moved"));
    std::fs::create_dir_all(&dir).unwrap();
    let vols = Volumes::open(vec![("v".into(), dir.clone(), VolumeSettings::default())], None);
    let first = vols.get("v").unwrap();
    assert_eq!(vols.check("v"), None, "nothing changed");
    std::fs::rename(&dir, &moved).unwrap();
    // Writes are refused at once, before any check.
    assert!(matches!(first.check_writable(), Err(Error::Unavailable)));
    assert!(matches!(vols.check("v"), Some(Transition::Unavailable(_))));
    assert!(matches!(vols.get("v"), Err(Error::Unavailable)));
    assert_eq!(vols.check("v"), None, "still gone: no new transition");
    std::fs::create_dir(&dir).unwrap();
    assert_eq!(vols.check("v"), Some(Transition::Online { read_only: false }));
    let second = vols.get("v").unwrap();
    assert!(!Arc::ptr_eq(&first, &second) && second.check_writable().is_ok());
    assert!(dir.join(".s3vol/tmp").is_dir(), "a new internal directory");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn statx_tells_mount_roots_from_plain_directories() {
    assert!(is_mount_point(Path::new("/")) && is_mount_point(Path::new("/proc")));
    let dir = scratch("statx");
    let m = mount_state_path(&dir).unwrap();
    assert!(!m.mount_root);
    let fd = nix::fcntl::open(&*dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY, nix::sys::stat::Mode::empty()).unwrap();
    assert_eq!(m.id, fsx::identity(fd.as_fd()).unwrap());
    assert_eq!(mount_state_fd(fd.as_fd()).unwrap(), m);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn head_cached_agrees_with_head_or_defers_to_it() {
    let (root, elsewhere) = (Scratch::new("headc"), Scratch::new("headc-out"));
    let outside = elsewhere.join("secret");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/f.txt"), b"hello").unwrap();
    std::fs::write(&outside, b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("d/out")).unwrap();
    let vol = Volume::open("t", &root, VolumeSettings::default()).unwrap();
    assert!(vol.local, "the tests' temp directory is on a local file system");

    let key = vol.key("d/f.txt").unwrap();
    let slow = vol.head(&key).unwrap();
    // Just looked up, so every component is cached: answered on this thread.
    let fast = vol.head_cached(&key).expect("cached lookup").unwrap();
    assert_eq!((fast.size, fast.mtime_ns, &fast.meta.etag), (slow.size, slow.mtime_ns, &slow.meta.etag));

    // Missing keys, parents that are files, links out of the volume, directories: the
    // same refusal as head(), or a deferral to it, never an answer head() would not give.
    for k in ["d/missing", "d/f.txt/x", "d/out", "d"] {
        let key = vol.key(k).unwrap();
        let slow = vol.head(&key).map(|i| i.size).map_err(|e| e.to_string());
        assert!(slow.is_err(), "{k}: {slow:?}");
        if let Some(fast) = vol.head_cached(&key) {
            assert_eq!(fast.map(|i| i.size).map_err(|e| e.to_string()), slow, "{k}");
        }
    }
    // Directory markers always take the blocking path.
    assert!(vol.head_cached(&vol.key("d/").unwrap()).is_none());
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_file(&outside).unwrap();
}

#[test]
fn get_never_scans_volumes_root_and_a_rescan_finds_new_buckets() {
    let root = Scratch::new("rootmode");
    let vols = Volumes::open(vec![], Some((root.to_path_buf(), VolumeSettings::default())));
    std::fs::create_dir(root.join("vol-new")).unwrap();
    // `get` runs on the async threads: it answers from the map, never from the disk.
    assert!(matches!(vols.get("vol-new"), Err(Error::NoSuchBucket)));
    assert!(vols.may_discover("vol-new"), "an unknown valid name may be another node's bucket");
    assert!(!vols.may_discover("Bad_Name") && !vols.may_discover("ab"), "invalid names are never looked for");
    vols.rescan();
    assert!(vols.get("vol-new").is_ok());
    assert!(!vols.may_discover("vol-new"), "known now");
}

#[test]
fn discover_looks_up_one_name_and_never_takes_a_link_for_a_volume() {
    let root = Scratch::new("discover");
    let vols = Volumes::open(vec![], Some((root.to_path_buf(), VolumeSettings::default())));
    std::fs::create_dir(root.join("vol-new")).unwrap();
    std::fs::create_dir(root.join("vol-other")).unwrap();
    std::os::unix::fs::symlink(root.join("vol-new"), root.join("vol-link")).unwrap();
    vols.discover("vol-new");
    assert!(vols.get("vol-new").is_ok());
    assert!(matches!(vols.get("vol-other"), Err(Error::NoSuchBucket)), "one name, not a scan");
    vols.discover("vol-link");
    assert!(matches!(vols.get("vol-link"), Err(Error::NoSuchBucket)), "a link is no volume");
    vols.discover("vol-absent");
    assert!(matches!(vols.get("vol-absent"), Err(Error::NoSuchBucket)));
}

#[test]
fn create_bucket_makes_its_directory_from_the_root_handle_and_never_through_a_link() {
    let base = scratch("create");
    let (root, elsewhere) = (base.join("root"), base.join("elsewhere"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let vols = Volumes::open(vec![], Some((root.clone(), VolumeSettings::default())));
    let name = crate::store::key::BucketName::parse("vol-made").unwrap();
    vols.create(&name).unwrap();
    assert!(root.join("vol-made/.s3vol/tmp").is_dir(), "made, opened and served");
    assert!(vols.get("vol-made").is_ok());
    assert!(matches!(vols.create(&name), Err(Error::BucketExists)));

    // A name a pod took with a link is taken: nothing is made where the link points.
    std::os::unix::fs::symlink(&elsewhere, root.join("vol-link")).unwrap();
    let linked = crate::store::key::BucketName::parse("vol-link").unwrap();
    assert!(matches!(vols.create(&linked), Err(Error::BucketExists)));
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing created through the link");
}
