//! The records at the lineage tip, cached in one file beside the lineage index
//! (`.git/mlops/records/<project>/<environment>.bin`). Reading a stack's records from Git costs
//! an open and an inflate per loose object — 100,000 of them for 100,000 resources — where the
//! snapshot is one read. It is self-verifying: a record is taken from it only when its bytes
//! hash to the blob id the commit's tree names, so a stale, torn or edited snapshot costs a read
//! from Git, never a wrong record. An apply writes it with its commit; a read that had to go to
//! Git for the tip's records writes it again.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

use super::Lineage;

const MAGIC: &[u8] = b"mlops-records 1\n";

/// Record bytes by blob id, as the snapshot file holds them (unverified until [`Snapshot::get`]).
#[derive(Default)]
pub(super) struct Snapshot {
    data: Vec<u8>,
    at: HashMap<gix::ObjectId, (usize, usize)>,
}

impl Snapshot {
    /// The bytes of blob `id`, if the snapshot holds bytes that hash to it.
    pub(super) fn get(&self, id: &gix::ObjectId) -> Option<&[u8]> {
        let &(start, end) = self.at.get(id)?;
        let bytes = &self.data[start..end];
        let hash = gix::objs::compute_hash(id.kind(), gix::objs::Kind::Blob, bytes).ok()?;
        (hash == *id).then_some(bytes)
    }

    fn parse(data: Vec<u8>, kind: gix::hash::Kind) -> Snapshot {
        let mut at = HashMap::new();
        if data.starts_with(MAGIC) {
            let (id_len, mut pos) = (kind.len_in_bytes(), MAGIC.len());
            while pos + id_len + 4 <= data.len() {
                let id = gix::ObjectId::from_bytes_or_panic(&data[pos..pos + id_len]);
                let len =
                    u32::from_le_bytes(data[pos + id_len..pos + id_len + 4].try_into().expect("4 bytes")) as usize;
                let start = pos + id_len + 4;
                let Some(end) = start.checked_add(len).filter(|&e| e <= data.len()) else { break };
                at.insert(id, (start, end));
                pos = end;
            }
        }
        Snapshot { data, at }
    }
}

impl Lineage {
    fn snapshot_path(&self) -> PathBuf {
        let rel = self.ref_name.trim_start_matches("refs/mlops/lineage/");
        self.repo.common_dir().join("mlops").join("records").join(format!("{rel}.bin"))
    }

    /// The snapshot file as it is (empty when there is none or it cannot be read).
    pub(super) fn snapshot(&self) -> Snapshot {
        match std::fs::read(self.snapshot_path()) {
            Ok(data) => Snapshot::parse(data, self.repo.object_hash()),
            Err(_) => Snapshot::default(),
        }
    }

    /// The bytes of record blob `id`: from `snapshot` where it holds them (verified), else from Git.
    pub(super) fn record_bytes<'s>(
        &self,
        snapshot: &'s Snapshot,
        id: gix::ObjectId,
    ) -> Result<Cow<'s, [u8]>, super::LineageError> {
        match snapshot.get(&id) {
            Some(bytes) => Ok(Cow::Borrowed(bytes)),
            None => Ok(Cow::Owned(self.repo.find_blob(id).map_err(super::git)?.take_data())),
        }
    }

    /// Replaces the snapshot with `records` (blob id and bytes), written aside and renamed into
    /// place. A cache: failing to write it costs the next read its speed, nothing else.
    pub(super) fn write_snapshot<'a>(&self, records: impl IntoIterator<Item = (gix::ObjectId, Cow<'a, [u8]>)>) {
        let path = self.snapshot_path();
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().expect("the snapshot lives in a folder"))?;
            let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            out.write_all(MAGIC)?;
            for (id, bytes) in records {
                let Ok(len) = u32::try_from(bytes.len()) else { continue };
                out.write_all(id.as_bytes())?;
                out.write_all(&len.to_le_bytes())?;
                out.write_all(&bytes)?;
            }
            out.flush()?;
            std::fs::rename(&tmp, &path)
        };
        if write().is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_id(bytes: &[u8]) -> gix::ObjectId {
        gix::objs::compute_hash(gix::hash::Kind::Sha1, gix::objs::Kind::Blob, bytes).unwrap()
    }

    fn file(entries: &[(gix::ObjectId, &[u8])]) -> Vec<u8> {
        let mut data = MAGIC.to_vec();
        for (id, bytes) in entries {
            data.extend_from_slice(id.as_bytes());
            data.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            data.extend_from_slice(bytes);
        }
        data
    }

    #[test]
    fn only_bytes_that_hash_to_their_id_are_given() {
        let (a, b) = (b"{\"a\": 1}\n".as_slice(), b"{\"b\": 2}\n".as_slice());
        let snapshot = Snapshot::parse(file(&[(blob_id(a), a), (blob_id(a), b)]), gix::hash::Kind::Sha1);
        assert_eq!(snapshot.get(&blob_id(a)), None, "the later entry for a's id holds b's bytes: refused");
        let snapshot = Snapshot::parse(file(&[(blob_id(a), a), (blob_id(b), b)]), gix::hash::Kind::Sha1);
        assert_eq!(snapshot.get(&blob_id(a)), Some(a));
        assert_eq!(snapshot.get(&blob_id(b)), Some(b));
    }

    #[test]
    fn a_torn_or_foreign_file_gives_what_it_holds_whole_and_nothing_else() {
        let (a, b) = (b"first record\n".as_slice(), b"second record\n".as_slice());
        let whole = file(&[(blob_id(a), a), (blob_id(b), b)]);
        let torn = Snapshot::parse(whole[..whole.len() - 3].to_vec(), gix::hash::Kind::Sha1);
        assert_eq!(torn.get(&blob_id(a)), Some(a));
        assert_eq!(torn.get(&blob_id(b)), None);
        let foreign = Snapshot::parse(b"not a snapshot".to_vec(), gix::hash::Kind::Sha1);
        assert_eq!(foreign.get(&blob_id(a)), None);
    }
}
