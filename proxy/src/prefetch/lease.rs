//! containerd leases: what holds a pull's prefetched content until its
//! verdict. Content written with a lease's header is kept by it; deleting
//! the lease leaves unreferenced content to containerd's garbage collector.

use std::collections::HashMap;
use std::time::SystemTime;

use pullgate_proto::containerd::services::leases::v1 as leases;
use tonic::transport::Channel;

/// gRPC metadata naming the containerd namespace of a call.
pub(crate) const NAMESPACE_HEADER: &str = "containerd-namespace";
/// gRPC metadata naming the lease a write belongs to.
pub(crate) const LEASE_HEADER: &str = "containerd-lease";
/// Lease label: containerd's collector deletes the lease after this time (RFC 3339).
const EXPIRE_LABEL: &str = "containerd.io/gc.expire";
/// Lease label marking pullgate's prefetch leases.
pub(crate) const OWNER_LABEL: &str = "pullgate.io/prefetch";

/// The leases service in one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Leases {
    client: leases::leases_client::LeasesClient<Channel>,
    namespace: String,
}

impl Leases {
    pub(crate) fn new(channel: Channel, namespace: String) -> Self {
        Self {
            client: leases::leases_client::LeasesClient::new(channel),
            namespace,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Ok(v) = self.namespace.parse() {
            req.metadata_mut().insert(NAMESPACE_HEADER, v);
        }
        req
    }

    /// Creates lease `id`, which containerd deletes by itself after `expires`.
    ///
    /// # Errors
    /// containerd's status.
    pub(crate) async fn create(&self, id: &str, expires: SystemTime) -> Result<(), tonic::Status> {
        let expire = rfc3339(expires);
        let labels = HashMap::from([
            (EXPIRE_LABEL.to_owned(), expire),
            (OWNER_LABEL.to_owned(), "1".to_owned()),
        ]);
        self.client
            .clone()
            .create(self.request(leases::CreateRequest {
                id: id.to_owned(),
                labels,
            }))
            .await
            .map(drop)
    }

    /// Deletes lease `id`; with `sync`, containerd collects what it alone
    /// held before answering. A lease already gone is not an error.
    ///
    /// # Errors
    /// containerd's status.
    pub(crate) async fn delete(&self, id: &str, sync: bool) -> Result<(), tonic::Status> {
        match self
            .client
            .clone()
            .delete(self.request(leases::DeleteRequest {
                id: id.to_owned(),
                sync,
            }))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(s) => Err(s),
        }
    }
}

/// `at` as RFC 3339 in UTC, seconds precision (what containerd's `gc.expire` parses).
fn rfc3339(at: SystemTime) -> String {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expiry_is_rfc3339_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000);
        assert_eq!(rfc3339(at), "2026-11-30T00:53:20Z");
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
