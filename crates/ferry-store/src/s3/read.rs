//! Reading an object: ranged GETs pinned to the ETag seen when it was opened (a file
//! replaced meanwhile is an error, never a mix of two versions).

use std::sync::Arc;

use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::store_error;
use crate::{BlobRead, StoreError};

/// One object, read in ranges. Blocking (it runs the requests on the runtime it was
/// opened on).
#[derive(Debug)]
pub(crate) struct S3Read {
    pub(super) store: Arc<object_store::aws::AmazonS3>,
    pub(super) path: Path,
    pub(super) etag: Option<String>,
    pub(super) size: u64,
    pub(super) rt: tokio::runtime::Handle,
}

impl S3Read {
    fn get(&self, offset: u64, len: u64) -> Result<bytes::Bytes, StoreError> {
        let opts = GetOptions {
            if_match: self.etag.clone(),
            range: Some(GetRange::Bounded(offset..offset + len)),
            ..Default::default()
        };
        self.rt.block_on(async {
            let got = self.store.get_opts(&self.path, opts).await.map_err(store_error)?;
            got.bytes().await.map_err(store_error)
        })
    }
}

impl BlobRead for S3Read {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, StoreError> {
        let len = (buf.len() as u64).min(self.size.saturating_sub(offset));
        if len == 0 {
            return Ok(0);
        }
        let got = self.get(offset, len)?;
        let n = got.len().min(buf.len());
        buf[..n].copy_from_slice(&got[..n]);
        Ok(n)
    }

    fn read_vec(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let got = self.get(offset, len as u64)?;
        if got.len() != len {
            return Err(StoreError::Storage(format!("the object store sent {} of {len} bytes", got.len())));
        }
        Ok(got.into())
    }

    fn scan(&self, offset: u64, len: u64, visit: &mut dyn FnMut(&[u8])) -> Result<(), StoreError> {
        const STEP: u64 = 8 << 20;
        let mut done = 0;
        while done < len {
            let want = (len - done).min(STEP);
            let got = self.get(offset + done, want)?;
            if got.is_empty() {
                return Err(StoreError::Storage(format!("the object ended {} bytes early", len - done)));
            }
            visit(&got);
            done += got.len() as u64;
        }
        Ok(())
    }
}
