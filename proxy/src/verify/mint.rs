//! The one conversion the test PKI (`pullgate_testkit`, which names no
//! pullgate crate) cannot make: a minted certificate as the verifier's own
//! [`Certificate`]. Keys, certificates, envelopes and revocation data are
//! the testkit's.

use pullgate_testkit::revocation::Pki;
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

/// A minted revocation PKI as the chain the verifier is given.
pub(crate) trait AsChain {
    /// Leaf, intermediate, root.
    fn chain(&self) -> Vec<Certificate>;
}

impl AsChain for Pki {
    fn chain(&self) -> Vec<Certificate> {
        vec![
            self.leaf.certificate(),
            self.intermediate.certificate(),
            self.root.certificate(),
        ]
    }
}
