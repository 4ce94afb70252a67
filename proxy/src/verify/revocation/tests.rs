use std::collections::HashMap;

use const_oid::db::rfc5280;
use der::asn1::{GeneralizedTime, Ia5String};
use der::{Decode, Encode};
use x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_ocsp::OcspRequest;

use super::*;
use crate::verify::mint::{AsCertificate as _, AsChain as _};
use pullgate_testkit::revocation::{
    self, now, Endpoints, Entry, IdHash, OcspSpec, Pki, Status, DAY, HOUR,
};
use pullgate_testkit::Issued;

const BASE: &str = "http://revocation.test";

/// Revocation data held in memory, as the cache holds it.
#[derive(Default)]
struct Mem {
    ocsp: HashMap<CertKey, Arc<OcspResponse>>,
    crl: HashMap<String, Arc<Crl>>,
    failures: HashMap<String, FetchFailure>,
}

impl RevocationData for Mem {
    fn ocsp(&self, key: &CertKey) -> Option<Arc<OcspResponse>> {
        self.ocsp.get(key).cloned()
    }
    fn crl(&self, url: &str, _issuer: &Certificate) -> Option<Arc<Crl>> {
        self.crl.get(url).cloned()
    }
    fn fetch_failure(&self, url: &str) -> Option<FetchFailure> {
        self.failures.get(url).cloned()
    }
}

impl Mem {
    fn with_ocsp(mut self, cert: &Issued, issuer: &Issued, der: &[u8]) -> Self {
        let key = CertKey::new(&cert.certificate(), &issuer.certificate());
        self.ocsp
            .insert(key, Arc::new(OcspResponse::from_der(der).unwrap()));
        self
    }
    fn with_crl(mut self, ca: &str, der: &[u8]) -> Self {
        self.crl.insert(
            revocation::crl_url(BASE, ca),
            Arc::new(Crl::from_der(der).unwrap()),
        );
        self
    }
}

/// OCSP good for the leaf and the intermediate.
fn all_good(pki: &Pki) -> Mem {
    Mem::default()
        .with_ocsp(
            &pki.leaf,
            &pki.intermediate,
            &OcspSpec::good(&pki.leaf, &pki.intermediate).der().unwrap(),
        )
        .with_ocsp(
            &pki.intermediate,
            &pki.root,
            &OcspSpec::good(&pki.intermediate, &pki.root).der().unwrap(),
        )
}

fn leaf_status(pki: &Pki, data: &Mem, signing_time: Option<SystemTime>) -> RevocationStatus {
    status(
        &pki.leaf.certificate(),
        &pki.intermediate.certificate(),
        data,
        signing_time,
        now(),
    )
}

fn leaf_ocsp(pki: &Pki, spec: &OcspSpec<'_>) -> Result<RevocationStatus, RevocationError> {
    check_ocsp(
        &OcspResponse::from_der(&spec.der().unwrap()).unwrap(),
        &pki.leaf.certificate(),
        &pki.intermediate.certificate(),
        None,
        now(),
    )
}

#[test]
fn ocsp_good_for_every_certificate_passes() {
    let pki = Pki::new(BASE, Endpoints::Both).unwrap();
    let data = all_good(&pki);
    assert_eq!(check_chain(&pki.chain(), &data, None, now()), Ok(()));
    assert_eq!(
        leaf_status(&pki, &data, None),
        RevocationStatus::Good {
            method: Method::Ocsp
        }
    );
}

#[test]
fn ocsp_revoked_leaf_fails_naming_it() {
    let pki = Pki::new(BASE, Endpoints::Both).unwrap();
    let revoked_at = now() - 2 * DAY;
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.status = Status::Revoked {
        at: revoked_at,
        invalidity: None,
    };
    let data = all_good(&pki).with_ocsp(&pki.leaf, &pki.intermediate, &spec.der().unwrap());
    let err = check_chain(&pki.chain(), &data, None, now()).unwrap_err();
    assert_eq!(err.index, 0);
    assert_eq!(err.subject, pki.leaf.certificate().subject());
    assert_eq!(
        *err.status,
        RevocationStatus::Revoked {
            at: revoked_at,
            reason: Some(CrlReason::KeyCompromise),
            method: Method::Ocsp
        }
    );
    assert!(err.to_string().contains("keyCompromise"), "{err}");
}

#[test]
fn revoked_intermediate_wins_over_unknown_leaf() {
    let pki = Pki::new(BASE, Endpoints::OcspOnly).unwrap();
    let mut spec = OcspSpec::good(&pki.intermediate, &pki.root);
    spec.status = Status::Revoked {
        at: now() - DAY,
        invalidity: None,
    };
    let data = Mem::default().with_ocsp(&pki.intermediate, &pki.root, &spec.der().unwrap());
    let err = check_chain(&pki.chain(), &data, None, now()).unwrap_err();
    assert_eq!(err.index, 1);
    assert!(matches!(*err.status, RevocationStatus::Revoked { .. }));
}

#[test]
fn invalidity_date_after_authentic_signing_time_keeps_the_signature() {
    let pki = Pki::new(BASE, Endpoints::OcspOnly).unwrap();
    let invalid_from = now() - 5 * DAY;
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.status = Status::Revoked {
        at: now() - DAY,
        invalidity: Some(invalid_from),
    };
    let data = Mem::default().with_ocsp(&pki.leaf, &pki.intermediate, &spec.der().unwrap());
    // Signed (authentically) before the key became invalid: still good.
    assert!(matches!(
        leaf_status(&pki, &data, Some(invalid_from - DAY)),
        RevocationStatus::Good { .. }
    ));
    // Signed after, or no authentic signing time: revoked.
    assert!(matches!(
        leaf_status(&pki, &data, Some(invalid_from + HOUR)),
        RevocationStatus::Revoked { .. }
    ));
    assert!(matches!(
        leaf_status(&pki, &data, None),
        RevocationStatus::Revoked { .. }
    ));
}

#[test]
fn ocsp_unknown_status_falls_back_to_the_crl() {
    let pki = Pki::new(BASE, Endpoints::Both).unwrap();
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.status = Status::Unknown;
    let data = Mem::default().with_ocsp(&pki.leaf, &pki.intermediate, &spec.der().unwrap());
    match leaf_status(&pki, &data, None) {
        RevocationStatus::Unknown { ocsp, crl } => {
            assert_eq!(ocsp, Some(RevocationError::CertStatusUnknown));
            assert_eq!(crl, Some(RevocationError::NotFetched));
        }
        other => panic!("{other:?}"),
    }
    let data = data.with_crl(
        "intermediate",
        &revocation::current_crl(&pki.intermediate, &[]).unwrap(),
    );
    assert_eq!(
        leaf_status(&pki, &data, None),
        RevocationStatus::Good {
            method: Method::Crl
        }
    );
    let data = data.with_crl(
        "intermediate",
        &revocation::current_crl(&pki.intermediate, &[Entry::revoked(3)]).unwrap(),
    );
    assert!(matches!(
        leaf_status(&pki, &data, None),
        RevocationStatus::Revoked {
            method: Method::Crl,
            reason: Some(CrlReason::KeyCompromise),
            ..
        }
    ));
}

#[test]
fn ocsp_time_window() {
    let pki = Pki::new(BASE, Endpoints::OcspOnly).unwrap();
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.this_update = now() - 3 * DAY;
    spec.next_update = Some(now() - DAY);
    assert!(matches!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::Expired { .. })
    ));
    spec.next_update = None;
    assert_eq!(leaf_ocsp(&pki, &spec), Err(RevocationError::NoNextUpdate));
    spec.this_update = now() + HOUR;
    spec.next_update = Some(now() + DAY);
    assert!(matches!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::NotYetValid { .. })
    ));
    // Within the allowed clock skew.
    spec.this_update = now() + CLOCK_SKEW / 2;
    assert!(leaf_ocsp(&pki, &spec).is_ok());
}

#[test]
fn ocsp_signers() {
    let pki = Pki::new(BASE, Endpoints::OcspOnly).unwrap();
    // Signed by the root, which did not issue the leaf.
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.signer = &pki.root;
    assert_eq!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::UnauthorizedSigner)
    );
    // Same issuer name, another key: the issuer's key does not verify it.
    let other = Pki::new(BASE, Endpoints::OcspOnly).unwrap();
    spec.signer = &other.intermediate;
    assert_eq!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::BadSignature {
            what: "OCSP response"
        })
    );
    // A delegated responder with id-kp-OCSPSigning, carried in the response.
    let responder = Pki::responder(&pki.intermediate, true).unwrap();
    spec.signer = &responder;
    spec.certs = vec![&responder];
    assert!(leaf_ocsp(&pki, &spec).is_ok());
    spec.by_key = true;
    assert!(leaf_ocsp(&pki, &spec).is_ok());
    // ... but not when the responder certificate is not in the response.
    spec.certs = Vec::new();
    assert_eq!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::UnauthorizedSigner)
    );
    // Without id-kp-OCSPSigning it may not sign responses.
    let not_responder = Pki::responder(&pki.intermediate, false).unwrap();
    spec.signer = &not_responder;
    spec.certs = vec![&not_responder];
    assert_eq!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::UnauthorizedSigner)
    );
    // Issued by another CA.
    let foreign = Pki::responder(&pki.root, true).unwrap();
    spec.signer = &foreign;
    spec.certs = vec![&foreign];
    assert_eq!(
        leaf_ocsp(&pki, &spec),
        Err(RevocationError::UnauthorizedSigner)
    );
}

#[test]
fn ocsp_cert_id_matching() {
    let pki = Pki::new(BASE, Endpoints::OcspOnly).unwrap();
    let mut spec = OcspSpec::good(&pki.leaf, &pki.intermediate);
    spec.hash = IdHash::Sha256;
    assert!(leaf_ocsp(&pki, &spec).is_ok());
    // A response about another certificate.
    let about_intermediate = OcspSpec::good(&pki.intermediate, &pki.intermediate);
    assert_eq!(
        leaf_ocsp(&pki, &about_intermediate),
        Err(RevocationError::NoMatchingResponse)
    );
}

#[test]
fn ocsp_responder_errors_are_typed() {
    let try_later = x509_ocsp::OcspResponse::try_later().to_der().unwrap();
    assert_eq!(
        OcspResponse::from_der(&try_later).unwrap_err(),
        RevocationError::ResponderStatus {
            status: OcspResponseStatus::TryLater
        }
    );
    assert_eq!(
        OcspResponse::from_der(b"<html>oops</html>").unwrap_err(),
        RevocationError::Malformed {
            what: "OCSP response"
        }
    );
}

#[test]
fn crl_checks() {
    let pki = Pki::new(BASE, Endpoints::CrlOnly).unwrap();
    let leaf = pki.leaf.certificate();
    let int = pki.intermediate.certificate();
    let urls = [revocation::crl_url(BASE, "intermediate")];
    let check = |der: &[u8], signing_time| {
        check_crl(
            &Crl::from_der(der).unwrap(),
            &leaf,
            &int,
            &urls,
            signing_time,
            now(),
        )
    };
    let good = revocation::current_crl(&pki.intermediate, &[Entry::revoked(77)]).unwrap();
    assert_eq!(
        check(&good, None),
        Ok(RevocationStatus::Good {
            method: Method::Crl
        })
    );
    let revoked = revocation::current_crl(&pki.intermediate, &[Entry::revoked(3)]).unwrap();
    assert!(matches!(
        check(&revoked, None),
        Ok(RevocationStatus::Revoked { .. })
    ));
    // Expired: not listed → unknown; listed → still revoked (spec).
    let expired_good =
        revocation::crl(&pki.intermediate, &[], now() - 9 * DAY, now() - DAY).unwrap();
    assert!(matches!(
        check(&expired_good, None),
        Err(RevocationError::Expired { what: "CRL", .. })
    ));
    let expired_revoked = revocation::crl(
        &pki.intermediate,
        &[Entry::revoked(3)],
        now() - 9 * DAY,
        now() - DAY,
    )
    .unwrap();
    assert!(matches!(
        check(&expired_revoked, None),
        Ok(RevocationStatus::Revoked { .. })
    ));
    // ... unless on hold.
    let mut hold = Entry::revoked(3);
    hold.reason = Some(rcgen::RevocationReason::CertificateHold);
    let expired_hold =
        revocation::crl(&pki.intermediate, &[hold], now() - 9 * DAY, now() - DAY).unwrap();
    assert!(matches!(
        check(&expired_hold, None),
        Err(RevocationError::Expired { .. })
    ));
    // rcgen writes invalidityDate as UTCTime; RFC 5280 §5.3.2 says
    // GeneralizedTime (Go's parser, so notation, refuses it too).
    let mut utc = Entry::revoked(3);
    utc.invalidity = Some(now() - 3 * DAY);
    let crl = revocation::current_crl(&pki.intermediate, &[utc]).unwrap();
    assert_eq!(
        check(&crl, Some(now() - 4 * DAY)),
        Err(RevocationError::Malformed { what: "CRL" })
    );
    // Invalidity date after the authentic signing time.
    let crl = revocation::resign_crl(&revoked, &pki.intermediate, |tbs| {
        let entry = &mut tbs.revoked_certificates.as_mut().unwrap()[0];
        entry
            .crl_entry_extensions
            .get_or_insert_with(Vec::new)
            .push(
                revocation::extension(
                    rfc5280::ID_CE_INVALIDITY_DATE,
                    false,
                    GeneralizedTime::from_system_time(now() - 3 * DAY)
                        .unwrap()
                        .to_der()
                        .unwrap(),
                )
                .unwrap(),
            );
    })
    .unwrap();
    assert!(matches!(
        check(&crl, Some(now() - 4 * DAY)),
        Ok(RevocationStatus::Good { .. })
    ));
    assert!(matches!(
        check(&crl, Some(now() - 2 * DAY)),
        Ok(RevocationStatus::Revoked { .. })
    ));
    // Issued by the root, not the leaf's issuer.
    let by_root = revocation::current_crl(&pki.root, &[]).unwrap();
    assert_eq!(
        check(&by_root, None),
        Err(RevocationError::CrlIssuerMismatch)
    );
    // Same issuer name, another key.
    let other = Pki::new(BASE, Endpoints::CrlOnly).unwrap();
    let forged = revocation::current_crl(&other.intermediate, &[]).unwrap();
    assert_eq!(
        check(&forged, None),
        Err(RevocationError::BadSignature { what: "CRL" })
    );
    // Issued in the future.
    let future = revocation::crl(&pki.intermediate, &[], now() + DAY, now() + 9 * DAY).unwrap();
    assert!(matches!(
        check(&future, None),
        Err(RevocationError::NotYetValid { .. })
    ));
}

#[test]
fn crl_extensions() {
    let pki = Pki::new(BASE, Endpoints::CrlOnly).unwrap();
    let leaf = pki.leaf.certificate();
    let int = pki.intermediate.certificate();
    let urls = [revocation::crl_url(BASE, "intermediate")];
    let base = revocation::current_crl(&pki.intermediate, &[]).unwrap();
    let with_ext = |ext: x509_cert::ext::Extension| {
        let der = revocation::resign_crl(&base, &pki.intermediate, |tbs| {
            tbs.crl_extensions.get_or_insert_with(Vec::new).push(ext);
        })
        .unwrap();
        check_crl(
            &Crl::from_der(&der).unwrap(),
            &leaf,
            &int,
            &urls,
            None,
            now(),
        )
    };
    // A base CRL that points to a delta CRL (freshestCRL), and a delta CRL.
    let freshest = x509_cert::ext::pkix::FreshestCrl(vec![]).to_der().unwrap();
    assert_eq!(
        with_ext(revocation::extension(rfc5280::ID_CE_FRESHEST_CRL, false, freshest).unwrap()),
        Err(RevocationError::DeltaCrlUnsupported)
    );
    assert_eq!(
        with_ext(
            revocation::extension(rfc5280::ID_CE_DELTA_CRL_INDICATOR, true, vec![2, 1, 1]).unwrap()
        ),
        Err(RevocationError::DeltaCrlUnsupported)
    );
    let unknown = ObjectIdentifier::new_unwrap("1.2.3.4.5");
    assert_eq!(
        with_ext(revocation::extension(unknown, true, vec![5, 0]).unwrap()),
        Err(RevocationError::UnsupportedCriticalExtension {
            what: "CRL",
            oid: unknown
        })
    );
    assert!(with_ext(revocation::extension(unknown, false, vec![5, 0]).unwrap()).is_ok());
    let idp = |f: &dyn Fn(&mut IssuingDistributionPoint)| {
        let mut idp = IssuingDistributionPoint {
            distribution_point: None,
            only_contains_user_certs: false,
            only_contains_ca_certs: false,
            only_some_reasons: None,
            indirect_crl: false,
            only_contains_attribute_certs: false,
        };
        f(&mut idp);
        revocation::extension(
            rfc5280::ID_CE_ISSUING_DISTRIBUTION_POINT,
            true,
            idp.to_der().unwrap(),
        )
        .unwrap()
    };
    assert!(with_ext(idp(&|i| i.only_contains_user_certs = true)).is_ok());
    assert_eq!(
        with_ext(idp(&|i| i.only_contains_ca_certs = true)),
        Err(RevocationError::CrlScopeMismatch)
    );
    assert_eq!(
        with_ext(idp(&|i| i.indirect_crl = true)),
        Err(RevocationError::UnsupportedCrlScope)
    );
    let named = |url: &str| {
        let url = url.to_owned();
        idp(&move |i| {
            i.distribution_point = Some(DistributionPointName::FullName(vec![
                GeneralName::UniformResourceIdentifier(Ia5String::new(&url).unwrap()),
            ]))
        })
    };
    assert!(with_ext(named(&urls[0])).is_ok());
    assert_eq!(
        with_ext(named("http://elsewhere.test/other.crl")),
        Err(RevocationError::CrlScopeMismatch)
    );
}

#[test]
fn certificates_without_endpoints_are_not_revocable() {
    let pki = Pki::new(BASE, Endpoints::None).unwrap();
    assert!(needed(&pki.chain()).is_empty());
    assert_eq!(
        leaf_status(&pki, &Mem::default(), None),
        RevocationStatus::NonRevokable
    );
    assert_eq!(
        check_chain(&pki.chain(), &Mem::default(), None, now()),
        Ok(())
    );
    // A lone self-signed certificate: nothing to check.
    assert_eq!(
        check_chain(&pki.chain()[2..], &Mem::default(), None, now()),
        Ok(())
    );
    assert_eq!(check_chain(&[], &Mem::default(), None, now()), Ok(()));
}

#[test]
fn missing_data_is_unknown_and_says_why() {
    let pki = Pki::new(BASE, Endpoints::Both).unwrap();
    let mut data = Mem::default();
    let ocsp_url = revocation::ocsp_url(BASE, "intermediate");
    data.failures
        .insert(ocsp_url.clone(), FetchFailure::Status { status: 500 });
    let err = check_chain(&pki.chain(), &data, None, now()).unwrap_err();
    // The intermediate (nearer the root) is reported first.
    assert_eq!(err.index, 1);
    assert_eq!(
        *err.status,
        RevocationStatus::Unknown {
            ocsp: Some(RevocationError::NotFetched),
            crl: Some(RevocationError::NotFetched)
        }
    );
    match leaf_status(&pki, &data, None) {
        RevocationStatus::Unknown { ocsp, .. } => assert_eq!(
            ocsp,
            Some(RevocationError::Unavailable {
                url: ocsp_url,
                why: FetchFailure::Status { status: 500 }
            })
        ),
        other => panic!("{other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("cannot be determined"), "{text}");
}

#[test]
fn needed_lists_ocsp_requests_and_crl_urls_except_for_the_root() {
    let pki = Pki::new(BASE, Endpoints::Both).unwrap();
    let requests = needed(&pki.chain());
    assert_eq!(requests.len(), 2);
    let leaf = &requests[0];
    assert_eq!(leaf.index, 0);
    assert_eq!(
        leaf.key,
        CertKey::new(&pki.leaf.certificate(), &pki.intermediate.certificate())
    );
    assert_eq!(leaf.crl_urls(), [revocation::crl_url(BASE, "intermediate")]);
    assert_eq!(
        leaf.ocsp_urls(),
        [revocation::ocsp_url(BASE, "intermediate")]
    );
    let request = OcspRequest::from_der(leaf.ocsp_request.as_ref().unwrap()).unwrap();
    assert_eq!(
        request.tbs_request.request_list[0].req_cert,
        revocation::cert_id(&pki.leaf, &pki.intermediate, IdHash::Sha1).unwrap()
    );
    assert_eq!(requests[1].index, 1);
    assert_eq!(requests[1].crl_urls(), [revocation::crl_url(BASE, "root")]);

    let crl_only = Pki::new(BASE, Endpoints::CrlOnly).unwrap();
    let requests = needed(&crl_only.chain());
    assert!(requests.iter().all(|r| r.ocsp_request.is_none()));
}

#[test]
fn crl_files_in_pem_and_der() {
    let pki = Pki::new(BASE, Endpoints::CrlOnly).unwrap();
    let der = revocation::current_crl(&pki.intermediate, &[]).unwrap();
    let pem = der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, &der).unwrap();
    let from_pem = Crl::from_file_bytes(pem.as_bytes()).unwrap();
    let from_der = Crl::from_file_bytes(&der).unwrap();
    assert_eq!(from_pem.issuer_name_der(), from_der.issuer_name_der());
    assert_eq!(
        Some(from_der.issuer_name_der().to_vec()),
        subject_name_der(&pki.intermediate.certificate())
    );
    assert_eq!(from_der.next_update(), Some(now() + 7 * DAY));
    let cert_pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &der).unwrap();
    assert!(Crl::from_file_bytes(cert_pem.as_bytes()).is_err());
}

proptest::proptest! {
    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        let _ = OcspResponse::from_der(&bytes);
        let _ = Crl::from_der(&bytes);
        let _ = Crl::from_file_bytes(&bytes);
    }

    #[test]
    fn mutated_responses_never_panic(index in 0usize..4096, byte in proptest::prelude::any::<u8>()) {
        let pki = fixture_pki();
        let mut ocsp = OcspSpec::good(&pki.leaf, &pki.intermediate).der().unwrap();
        let i = index % ocsp.len();
        ocsp[i] = byte;
        if let Ok(resp) = OcspResponse::from_der(&ocsp) {
            let _ = check_ocsp(&resp, &pki.leaf.certificate(), &pki.intermediate.certificate(), None, now());
        }
        let mut crl = revocation::current_crl(&pki.intermediate, &[Entry::revoked(3)]).unwrap();
        let i = index % crl.len();
        crl[i] = byte;
        if let Ok(crl) = Crl::from_der(&crl) {
            let urls = [revocation::crl_url(BASE, "intermediate")];
            let _ = check_crl(&crl, &pki.leaf.certificate(), &pki.intermediate.certificate(), &urls, None, now());
        }
    }
}

fn fixture_pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| Pki::new(BASE, Endpoints::Both).unwrap())
}

#[test]
fn unreadable_endpoints_make_the_status_unknown() {
    let root = pullgate_testkit::self_signed(
        pullgate_testkit::ca_params("Malformed CDP Root", None),
        pullgate_testkit::Key::p256().unwrap(),
    )
    .unwrap();
    let mut params = pullgate_testkit::leaf_params("Malformed CDP Leaf");
    // A CRL distribution points extension whose value is not DER.
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[2, 5, 29, 31],
            vec![0x30, 0x03, 0xff],
        ));
    let leaf =
        pullgate_testkit::issue(params, pullgate_testkit::Key::p256().unwrap(), &root).unwrap();
    let chain = [leaf.certificate(), root.certificate()];
    let requests = needed(&chain);
    assert_eq!(requests.len(), 1);
    assert!(requests[0].ocsp_urls().is_empty() && requests[0].crl_urls().is_empty());
    let err = check_chain(&chain, &Mem::default(), None, now()).unwrap_err();
    let malformed = RevocationError::Malformed {
        what: "certificate's revocation extension",
    };
    assert_eq!(
        *err.status,
        RevocationStatus::Unknown {
            ocsp: Some(malformed.clone()),
            crl: Some(malformed)
        }
    );
}

#[test]
fn rsa_signed_crls_verify() {
    use pullgate_testkit::Key;
    let pki = Pki::with_ca_keys(
        BASE,
        Endpoints::CrlOnly,
        Key::p256().unwrap(),
        Key::rsa2048().unwrap(),
    )
    .unwrap();
    let urls = [revocation::crl_url(BASE, "intermediate")];
    let check = |der: &[u8]| {
        check_crl(
            &Crl::from_der(der).unwrap(),
            &pki.leaf.certificate(),
            &pki.intermediate.certificate(),
            &urls,
            None,
            now(),
        )
    };
    assert!(matches!(
        check(&revocation::current_crl(&pki.intermediate, &[]).unwrap()),
        Ok(RevocationStatus::Good { .. })
    ));
    assert!(matches!(
        check(&revocation::current_crl(&pki.intermediate, &[Entry::revoked(3)]).unwrap()),
        Ok(RevocationStatus::Revoked { .. })
    ));
    // The same CRL body under another RSA key of the same name does not verify.
    let other = Pki::with_ca_keys(
        BASE,
        Endpoints::CrlOnly,
        Key::p256().unwrap(),
        Key::rsa4096().unwrap(),
    )
    .unwrap();
    assert_eq!(
        check(&revocation::current_crl(&other.intermediate, &[]).unwrap()),
        Err(RevocationError::BadSignature { what: "CRL" })
    );
}

/// OCSP responses and a CRL made by OpenSSL (`testdata/generate.sh`): an
/// independent producer, so the parsers are not only tested against the
/// x509-ocsp and rcgen encodings they share code with.
mod openssl {
    use super::*;

    /// After the fixtures were made (`testdata/GENERATED_AT`, 2026-11-26),
    /// long before they expire (2126).
    fn openssl_now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600) // 2027-01-01
    }

    fn cert(name: &str) -> Certificate {
        let path = format!(
            "{}/src/verify/revocation/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        Certificate::from_der(&std::fs::read(path).unwrap()).unwrap()
    }

    fn bytes(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/src/verify/revocation/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn ocsp_responses_signed_by_the_issuer_and_by_a_delegated_responder() {
        let int = cert("intermediate.der");
        let good = OcspResponse::from_der(&bytes("leaf_good_signed_by_issuer.ocsp")).unwrap();
        assert_eq!(
            check_ocsp(&good, &cert("leaf.der"), &int, None, openssl_now()),
            Ok(RevocationStatus::Good {
                method: Method::Ocsp
            })
        );
        let revoked =
            OcspResponse::from_der(&bytes("revoked_leaf_signed_by_delegated_responder.ocsp"))
                .unwrap();
        assert!(matches!(
            check_ocsp(
                &revoked,
                &cert("revoked-leaf.der"),
                &int,
                None,
                openssl_now()
            ),
            Ok(RevocationStatus::Revoked {
                reason: Some(CrlReason::KeyCompromise),
                method: Method::Ocsp,
                ..
            })
        ));
        // A response about one certificate says nothing about another.
        assert_eq!(
            check_ocsp(&good, &cert("revoked-leaf.der"), &int, None, openssl_now()),
            Err(RevocationError::NoMatchingResponse)
        );
    }

    #[test]
    fn crl() {
        let int = cert("intermediate.der");
        let crl = Crl::from_der(&bytes("intermediate.crl")).unwrap();
        let urls = ["http://crl.revocation.test/intermediate.crl".to_owned()];
        assert_eq!(
            check_crl(&crl, &cert("leaf.der"), &int, &urls, None, openssl_now()),
            Ok(RevocationStatus::Good {
                method: Method::Crl
            })
        );
        assert!(matches!(
            check_crl(
                &crl,
                &cert("revoked-leaf.der"),
                &int,
                &urls,
                None,
                openssl_now()
            ),
            Ok(RevocationStatus::Revoked {
                reason: Some(CrlReason::KeyCompromise),
                ..
            })
        ));
    }

    #[test]
    fn endpoints_and_chain() {
        let chain = [cert("leaf.der"), cert("intermediate.der"), cert("root.der")];
        let requests = needed(&chain);
        assert_eq!(requests.len(), 2);
        assert_eq!(
            requests[0].ocsp_urls(),
            ["http://ocsp.revocation.test/intermediate"]
        );
        assert_eq!(
            requests[0].crl_urls(),
            ["http://crl.revocation.test/intermediate.crl"]
        );
        // OpenSSL answers the SHA-1 CertID pullgate sends.
        let mut data = Mem::default();
        data.ocsp.insert(
            requests[0].key.clone(),
            Arc::new(OcspResponse::from_der(&bytes("leaf_good_signed_by_issuer.ocsp")).unwrap()),
        );
        assert_eq!(
            requests[0].status(&data, None, openssl_now()),
            RevocationStatus::Good {
                method: Method::Ocsp
            }
        );
    }
}
