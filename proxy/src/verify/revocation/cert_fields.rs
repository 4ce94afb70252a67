//! What the revocation checks read from a certificate: its full parsed form,
//! the OCSP responder and CRL distribution point URLs it names
//! ([`endpoints`]), and the inner DER fields OCSP's CertID hashes. A leaf:
//! the OCSP, CRL and request modules all read through it.

use const_oid::db::rfc5280;
use der::{Decode, Encode, Reader, SliceReader};
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{AuthorityInfoAccessSyntax, CrlDistributionPoints};

use crate::verify::x509::Certificate;

use super::RevocationError;

/// The OCSP responders and CRL distribution points a certificate names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Endpoints {
    pub(crate) ocsp: Vec<String>,
    pub(crate) crl: Vec<String>,
}

pub(super) fn parse(cert: &Certificate) -> Result<x509_cert::Certificate, RevocationError> {
    x509_cert::Certificate::from_der(cert.der()).map_err(|_| RevocationError::Malformed {
        what: "certificate",
    })
}

/// The URIs of the certificate's AIA `id-ad-ocsp` entries and of its CRL
/// distribution points' full names, in the certificate's order.
pub(crate) fn endpoints(cert: &Certificate) -> Result<Endpoints, RevocationError> {
    let parsed = parse(cert)?;
    let malformed = |_| RevocationError::Malformed {
        what: "certificate's revocation extension",
    };
    let mut out = Endpoints::default();
    for ext in parsed.tbs_certificate.extensions.iter().flatten() {
        let value = ext.extn_value.as_bytes();
        match ext.extn_id {
            rfc5280::ID_PE_AUTHORITY_INFO_ACCESS => {
                let aia = AuthorityInfoAccessSyntax::from_der(value).map_err(malformed)?;
                for ad in aia.0 {
                    if ad.access_method == rfc5280::ID_AD_OCSP {
                        if let GeneralName::UniformResourceIdentifier(uri) = ad.access_location {
                            out.ocsp.push(uri.to_string());
                        }
                    }
                }
            }
            rfc5280::ID_CE_CRL_DISTRIBUTION_POINTS => {
                let dps = CrlDistributionPoints::from_der(value).map_err(malformed)?;
                for dp in dps.0 {
                    if let Some(DistributionPointName::FullName(names)) = dp.distribution_point {
                        out.crl.extend(uris(&names));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

pub(super) fn uris(names: &[GeneralName]) -> impl Iterator<Item = String> + '_ {
    names.iter().filter_map(|n| match n {
        GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
        _ => None,
    })
}

/// The first TLV inside the outer SEQUENCE of `der`: the signed part of a
/// signed structure, as received (signatures are checked over these bytes,
/// not over a re-encoding).
pub(super) fn first_inner_tlv(der: &[u8]) -> Option<Vec<u8>> {
    let mut outer = SliceReader::new(der).ok()?;
    let header = der::Header::decode(&mut outer).ok()?;
    let header_len = usize::try_from(header.encoded_len().ok()?).ok()?;
    let mut inner = SliceReader::new(der.get(header_len..)?).ok()?;
    Some(inner.tlv_bytes().ok()?.to_vec())
}
