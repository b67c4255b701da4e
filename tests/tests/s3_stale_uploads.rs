//! Pruning aborts S3 multipart uploads that a crashed agent left behind, but
//! only old ones under the store's prefix: a running upload looks the same.
//! (Its own test binary: it sets the AWS credentials in its environment for
//! the in-process store.)

use chrono::{Duration, Utc};
use vertice_agent::catalog::Scope;
use vertice_agent::commands::prune::prune;
use vertice_agent::retention::Policy;
use vertice_agent::store::s3::S3Settings;
use vertice_agent::store::{open_store, StoreOptions};
use vertice_tests::seaweedfs::credentials_env;
use vertice_tests::SeaweedFs;

#[test]
fn prune_aborts_only_old_dangling_uploads_under_its_prefix() {
    let weed = SeaweedFs::start();
    weed.create_bucket("vertice-b");
    weed.start_multipart_upload(
        "vertice-b",
        "p/default/app/20260101T000000Z-abcd/dump.pgdump.zst",
    );
    weed.start_multipart_upload("vertice-b", "elsewhere/default/app/x/dump.pgdump.zst");
    for (k, v) in credentials_env() {
        std::env::set_var(k, v);
    }
    let options = StoreOptions {
        s3: S3Settings {
            endpoint: Some(weed.endpoint()),
            ..S3Settings::default()
        },
        ..StoreOptions::default()
    };
    let policy = Policy {
        keep_last: Some(1),
        min_keep: Some(1),
        ..Policy::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let aborted = |now, dry_run| {
        runtime.block_on(async {
            let store = open_store(&"s3://vertice-b/p".parse().expect("url"), &options)
                .await
                .expect("store");
            prune(
                store.as_ref(),
                &Scope::default(),
                &policy,
                Duration::hours(24),
                dry_run,
                now,
                None,
            )
            .await
            .expect("prune")
            .aborted_uploads
        })
    };
    assert_eq!(
        aborted(Utc::now(), false),
        0,
        "a fresh upload may still be running"
    );
    assert_eq!(
        aborted(Utc::now() + Duration::days(2), true),
        0,
        "a dry run aborts nothing"
    );
    assert_eq!(weed.dangling_uploads("vertice-b").len(), 2);
    assert_eq!(aborted(Utc::now() + Duration::days(2), false), 1);
    assert_eq!(
        weed.dangling_uploads("vertice-b"),
        vec!["elsewhere/default/app/x/dump.pgdump.zst".to_string()],
        "uploads outside the store's prefix are not ours to abort"
    );
}

/// An upload never replaces an object it did not create, whether it goes up
/// in one request or in parts, and a refused upload leaves the object as it was.
#[test]
fn uploads_never_overwrite_an_existing_object() {
    use vertice_agent::store::StoreError;
    let weed = SeaweedFs::start();
    weed.create_bucket("vertice-o");
    for (k, v) in credentials_env() {
        std::env::set_var(k, v);
    }
    let options = StoreOptions {
        s3: S3Settings {
            endpoint: Some(weed.endpoint()),
            ..S3Settings::default()
        },
        ..StoreOptions::default()
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = open_store(&"s3://vertice-o/p".parse().expect("url"), &options)
            .await
            .expect("store");
        let key = "default/app/20260101T000000Z-abcd/dump.pgdump.zst";
        store
            .put_bytes(key, vertice_agent::bytes::Bytes::from_static(b"original"))
            .await
            .expect("first write");
        let again = store
            .put_bytes(
                key,
                vertice_agent::bytes::Bytes::from_static(b"replacement"),
            )
            .await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists { .. })),
            "{again:?}"
        );
        let big = vec![7u8; 12 << 20];
        let streamed = store.put_stream(key, &mut big.as_slice()).await;
        assert!(
            matches!(streamed, Err(StoreError::AlreadyExists { .. })),
            "{streamed:?}"
        );
        let small = store.put_stream(key, &mut &b"short"[..]).await;
        assert!(
            matches!(small, Err(StoreError::AlreadyExists { .. })),
            "{small:?}"
        );
        let kept = store.get_bytes(key).await.expect("read");
        assert_eq!(&kept[..], b"original");
    });
    assert!(weed.dangling_uploads("vertice-o").is_empty());
}
