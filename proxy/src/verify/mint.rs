//! The one conversion the test PKI (`pullgate_testkit`, which names no
//! pullgate crate) cannot make: a minted certificate as the verifier's own
//! [`Certificate`]. Keys, certificates and envelopes are the testkit's.

use pullgate_testkit::Issued;

use crate::verify::x509::Certificate;

/// A minted certificate, parsed as the verifier parses one.
pub(crate) trait AsCertificate {
    /// The certificate as [`Certificate`].
    fn certificate(&self) -> Certificate;
}

impl AsCertificate for Issued {
    fn certificate(&self) -> Certificate {
        Certificate::from_der(self.cert.der()).unwrap()
    }
}
