//! Where a repository URL leads: the object store, the repository's root in it, its directory
//! when it is local, and what the store's errors must say about its credentials.

use super::BackendError;
use object_store::path::Path;
use object_store::ObjectStore;
use std::sync::Arc;

pub(super) struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// The directory of a `file://` repository.
    pub local_dir: Option<std::path::PathBuf>,
    /// Said with the store's errors, when where its credentials came from matters.
    pub credentials: Option<&'static str>,
}

/// Said of an S3 store given no credentials: object_store then asks the instance metadata
/// service, and off a cloud instance its refusal names neither S3 nor what to set.
const S3_METADATA_CREDENTIALS: &str = "no S3 credentials in AWS_* variables, so they were asked \
     from the instance metadata service; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

/// object_store's own retry policy for cloud stores: none. Retries are the backend's (backon,
/// each one logged, bounded by [`super::BackendOptions`]); object_store's, 10 per request for
/// up to 3 minutes by default, multiplied with them: a call to a store that was down, or
/// credentials that could not be had, took 80 s to fail instead of 9.
fn one_attempt() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        ..Default::default()
    }
}

/// Whether an S3 store would take its credentials from the instance metadata service: none of
/// the other sources object_store tries first is configured.
fn s3_credentials_from_metadata(builder: &object_store::aws::AmazonS3Builder) -> bool {
    use object_store::aws::AmazonS3ConfigKey as Key;
    let set = |key: Key| builder.get_config_value(&key).is_some();
    let unsigned = builder.get_config_value(&Key::SkipSignature).as_deref() == Some("true");
    !(unsigned
        || set(Key::AccessKeyId)
        || set(Key::SecretAccessKey)
        || (set(Key::WebIdentityTokenFile) && set(Key::RoleArn))
        || set(Key::ContainerCredentialsRelativeUri)
        || set(Key::ContainerCredentialsFullUri))
}

/// The store a URL names: `file:///path` or a plain path, `memory://`, `s3://bucket/prefix`,
/// `gs://bucket/prefix`, `az://container/prefix` (credentials and endpoints from the usual
/// `AWS_*`, `GOOGLE_*`, `AZURE_*` variables).
pub(super) fn locate(url: &str) -> Result<Location, BackendError> {
    let location = |message: String| BackendError::Location {
        url: url.to_string(),
        message,
    };
    let (scheme, rest) = url.split_once("://").unwrap_or(("file", url));
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut credentials = None;
    let cloud: Option<Result<Arc<dyn ObjectStore>, object_store::Error>> = match scheme {
        "s3" => {
            let builder = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_retry(one_attempt());
            if s3_credentials_from_metadata(&builder) {
                credentials = Some(S3_METADATA_CREDENTIALS);
            }
            Some(builder.build().map(|s| Arc::new(s) as _))
        }
        "gs" => Some(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(one_attempt())
                .build()
                .map(|s| Arc::new(s) as _),
        ),
        "az" => Some(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(bucket)
                .with_retry(one_attempt())
                .build()
                .map(|s| Arc::new(s) as _),
        ),
        _ => None,
    };
    let local_dir = (scheme == "file").then(|| std::path::PathBuf::from(rest));
    let (store, root): (Arc<dyn ObjectStore>, Path) = match (scheme, cloud) {
        (_, Some(store)) => (
            store.map_err(|e| location(e.to_string()))?,
            Path::from(prefix),
        ),
        ("memory", None) => (
            Arc::new(object_store::memory::InMemory::new()),
            Path::default(),
        ),
        ("file", None) => {
            let dir = std::path::PathBuf::from(rest);
            std::fs::create_dir_all(&dir)
                .map_err(|e| location(format!("creating {}: {e}", dir.display())))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| location(e.to_string()))?
                .with_automatic_cleanup(true);
            (Arc::new(store), Path::default())
        }
        _ => {
            return Err(location(
                "unknown scheme; use file://, s3://, gs://, az:// or memory://".into(),
            ))
        }
    };
    Ok(Location {
        store,
        root,
        local_dir,
        credentials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_store_without_credentials_says_where_it_asked_for_them() {
        use object_store::aws::AmazonS3Builder;
        let bare = AmazonS3Builder::new().with_bucket_name("b");
        assert!(s3_credentials_from_metadata(&bare));
        let keyed = AmazonS3Builder::new()
            .with_access_key_id("GK1")
            .with_secret_access_key("secret");
        assert!(!s3_credentials_from_metadata(&keyed));
        assert!(!s3_credentials_from_metadata(
            &AmazonS3Builder::new().with_skip_signature(true)
        ));
        let refused = object_store::Error::Generic {
            store: "S3",
            source: "Error performing PUT http://169.254.169.254/latest/api/token".into(),
        };
        let told =
            BackendError::from_store("get", "config", Some(S3_METADATA_CREDENTIALS), refused);
        assert_eq!(
            told.to_string(),
            format!(
                "get config ({S3_METADATA_CREDENTIALS}): Generic S3 error: Error performing PUT \
                 http://169.254.169.254/latest/api/token"
            )
        );
    }
}
