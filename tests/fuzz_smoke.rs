//! The smoke run of the fuzz targets (`fuzz/`), on the stable toolchain: each target runs on
//! its seeds, on every input kept under `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`
//! (every crash found becomes a file there), and on deterministic mutations of them. A target
//! fails by panicking (the router's targets also on any 5xx). Longer runs use cargo-fuzz; see
//! `fuzz/README.md`.

#[path = "../fuzz/harness/mod.rs"]
mod harness;

use std::path::Path;

/// Mutated inputs per target in the smoke run.
const MUTATIONS: usize = 600;

/// A small deterministic generator (xorshift64*), so a failing input can be found again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that matter to the formats under test.
const INTERESTING: &[&[u8]] = &[
    b"<",
    b">",
    b"\"",
    b"'",
    b"&",
    b"&amp;",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE x [<!ENTITY e \"e\">]>",
    b"&e;",
    b"\x00",
    b"\xff",
    b"\r\n",
    b",",
    b"=",
    b"%",
    b"%00",
    b"+",
    b"\xc3\x28",
    b"ds:Signature",
    b"ID=\"_x\"",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                let i = at.min(out.len() - 1);
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                out.splice(at..at, piece.iter().copied());
            }
            2 if at < out.len() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                out.drain(at..end);
            }
            3 if !out.is_empty() => {
                let from = rng.below(out.len());
                let end = (from + 1 + rng.below(64)).min(out.len());
                let copy = out[from..end].to_vec();
                out.splice(at..at, copy);
            }
            _ => out.truncate(at),
        }
    }
    out
}

/// The kept inputs of `target`: its corpus and its regressions.
fn kept(target: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut inputs = Vec::new();
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(folder).join(target)) else {
            continue;
        };
        for entry in entries.flatten() {
            inputs.push(std::fs::read(entry.path()).expect("a kept input"));
        }
    }
    inputs
}

#[test]
fn every_fuzz_target_survives_its_seeds_corpus_and_mutations() {
    for (n, target) in harness::TARGETS.iter().enumerate() {
        let mut inputs = harness::seeds(target);
        inputs.extend(kept(target));
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ n as u64);
        for _ in 0..MUTATIONS {
            let base = inputs[rng.below(inputs.len())].clone();
            inputs.push(mutate(&mut rng, &base));
        }
        for input in &inputs {
            harness::run(target, input);
        }
        eprintln!("{target}: {} inputs", inputs.len());
    }
}

/// The signed seed responses and the other seeds actually verify: a smoke run that only ever
/// met rejections would not reach the code behind the checks.
#[test]
fn the_saml_seed_passes_the_signature_check() {
    let s = harness::saml();
    let xml = harness::saml_seed("mia@fuzz.test", |_| {});
    let outline = nulab_pass::saml::outline::scan(&xml).expect("the seed scans");
    let verified = nulab_pass::saml::acs::verify(
        &xml,
        outline,
        &s.connection,
        &s.sp,
        Some(&[harness::REQUEST_ID]),
        &[],
    )
    .expect("the seed verifies");
    assert_eq!(verified.name_id.as_deref(), Some("mia@fuzz.test"));
    assert!(nulab_pass::saml::metadata::parse(&s.idp.metadata_xml(), None).is_ok());
}

/// Writes the seeds to `fuzz/corpus/<target>/` for cargo-fuzz (run by hand; see fuzz/README.md).
#[test]
#[ignore]
fn write_seed_corpus() {
    for target in harness::TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in harness::seeds(target).iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), seed).unwrap();
        }
    }
}

/// The signed content is read from the tree samael's reduction leaves, not from that tree
/// written out and parsed again: the two readings agree, on responses in the shapes IdPs send
/// (signed on the Response, the Assertion or both; prefixed, unprefixed, indented; an attribute
/// whose value is an element) and on mutations of them that still verify.
#[test]
fn the_reduced_tree_reads_as_its_text_would() {
    use nulab_pass::mock_idp::Signing;
    use nulab_pass::saml::{assertion, idp_keys, xml};
    use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode, XmlSec};

    let s = harness::saml();
    let keys: Vec<_> = s
        .connection
        .certificates
        .iter()
        .map(|c| idp_keys::key_of(c).expect("the fuzz IdP's key"))
        .collect();
    let keys: Vec<_> = keys.iter().map(|k| k.as_ref()).collect();
    let expected = assertion::Expected {
        idp_entity_id: &s.connection.idp_entity_id,
        sp_entity_id: &s.sp.sp_entity_id,
        acs_url: &s.sp.acs_url,
        request_ids: Some(&[harness::REQUEST_ID]),
        skew: chrono::Duration::seconds(120),
        max_issue_delay: chrono::Duration::seconds(210),
        now: chrono::Utc::now(),
    };
    let mut inputs = Vec::new();
    for signing in [Signing::Response, Signing::Assertion, Signing::Both] {
        for prefixes in [("saml", "samlp"), ("", ""), ("saml2", "saml2p")] {
            for pretty in [false, true] {
                inputs.push(harness::saml_seed("mia@fuzz.test", |spec| {
                    spec.signing = signing;
                    spec.prefixes = (prefixes.0.into(), prefixes.1.into());
                    spec.pretty = pretty;
                    spec.dsig_prefix = if pretty { "ds" } else { "" }.into();
                    spec.attributes = vec![("groups".into(), vec!["a".into(), "b c".into()])];
                    spec.raw_attributes = Some(
                        "<saml:Attribute Name=\"urn:oid:1.3.6.1.4.1.5923.1.1.1.10\"><saml:AttributeValue><saml:NameID Format=\"urn:oasis:names:tc:SAML:2.0:nameid-format:persistent\">x</saml:NameID></saml:AttributeValue></saml:Attribute>"
                            .replace("saml:", &if prefixes.0.is_empty() { String::new() } else { format!("{}:", prefixes.0) }),
                    );
                }).into_bytes());
            }
        }
    }
    let shapes = inputs.len();
    let mut rng = Rng(0x5EED_7EE5);
    for _ in 0..2_000 {
        let base = inputs[rng.below(shapes)].clone();
        inputs.push(mutate(&mut rng, &base));
    }
    let allowed = [AllowedSignatureAlgorithm::RsaSha256];
    let (mut compared, mut shapes_compared) = (0, 0);
    for (at, input) in inputs.iter().enumerate() {
        let Ok(text) = std::str::from_utf8(input) else {
            continue;
        };
        let Ok(tree) = XmlSec::reduce_xml_to_signed_document_with_keys(
            text,
            &keys,
            ReduceMode::ValidateAndMarkNoAncestors,
            Some(&allowed),
        ) else {
            continue;
        };
        let from_tree = assertion::read(&tree, &expected, None, None);
        if at < shapes {
            let verified = from_tree.as_ref().expect("every shape reads");
            assert_eq!(verified.name_id.as_deref(), Some("mia@fuzz.test"));
            assert_eq!(verified.attributes.len(), 2, "{:?}", verified.attributes);
        }
        let written = tree.to_string();
        let from_text = xml::parse_strict(&written)
            .ok_or("the written reduction does not parse")
            .map(|again| assertion::read(&again, &expected, None, None));
        assert_eq!(
            format!("{:?}", Ok::<_, &str>(from_tree)),
            format!("{from_text:?}"),
            "input {at}: {written}"
        );
        compared += 1;
        shapes_compared += usize::from(at < shapes);
    }
    assert_eq!(shapes_compared, shapes, "every shape verifies");
    eprintln!("{compared} reductions compared, {shapes} of them the shapes");
}
