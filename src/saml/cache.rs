//! SAML connections as the ACS reads them, parsed once per version. Each read asks the
//! database only for the connection's version (a trigger raises it on every change of the row,
//! by any code or server instance: schema migration 18) and re-reads the whole row when it
//! moved, so a change made through another instance counts at its next request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Connection, store};
use crate::ids::SamlConnectionId;

/// Most connections kept; past it the cache starts again empty (memory stays bounded).
const MAX: usize = 10_000;

/// The parsed connections of this process, by id, with the version each was read at.
#[derive(Default)]
pub struct Connections {
    parsed: Mutex<HashMap<SamlConnectionId, (i64, Arc<Connection>)>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connections")
    }
}

impl Connections {
    /// Connection `id` when the caller has just read its `version` on `conn`, in a statement it
    /// needed anyway (`None`: there is no such connection): the parsed copy when it is of that
    /// version, else the row, read on `conn`.
    pub async fn of_version(
        &self,
        conn: &mut sqlx::AnyConnection,
        id: SamlConnectionId,
        version: Option<i64>,
    ) -> Result<Option<Arc<Connection>>, sqlx::Error> {
        let Some(version) = version else {
            self.with(|m| m.remove(&id));
            return Ok(None);
        };
        match self.cached(id, version) {
            Some(hit) => Ok(Some(hit)),
            None => self.load(conn, id).await,
        }
    }

    /// The parsed copy of connection `id` when it is of `version`.
    fn cached(&self, id: SamlConnectionId, version: i64) -> Option<Arc<Connection>> {
        self.with(|m| {
            m.get(&id)
                .filter(|(v, _)| *v == version)
                .map(|(_, c)| c.clone())
        })
    }

    /// Reads and parses connection `id`, and keeps it.
    async fn load<'c>(
        &self,
        exec: impl sqlx::Executor<'c, Database = sqlx::Any>,
        id: SamlConnectionId,
    ) -> Result<Option<Arc<Connection>>, sqlx::Error> {
        let Some((version, connection)) = store::by_id_versioned(exec, id).await? else {
            return Ok(None);
        };
        let connection = Arc::new(connection);
        self.with(|m| {
            if m.len() >= MAX {
                m.clear();
            }
            m.insert(id, (version, connection.clone()))
        });
        Ok(Some(connection))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut HashMap<SamlConnectionId, (i64, Arc<Connection>)>) -> T,
    ) -> T {
        // A panic while holding the lock leaves a map that is still whole: keep using it.
        let mut map = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }
}
