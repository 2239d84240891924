use super::*;
use portal_shares::curve::{Curve, Group};
use portal_shares::ed25519::Ed25519;
use portal_shares::secp256k1::Secp256k1;

fn ejected<G: Group>(be: [u8; 32]) -> Ejected {
    let s = G::scalar(&be).unwrap();
    Ejected {
        curve: G::CURVE,
        key: G::key_bytes(&s),
        public: G::public_bytes(&G::mul_base(&s)),
    }
}

fn small(v: u8) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[31] = v;
    b
}

#[test]
fn secp256k1_key_is_64_hex_digits_and_its_address_is_the_evm_one() {
    let e = ejected::<Secp256k1>(small(1));
    assert_eq!(*key_text(&e), format!("{}1", "0".repeat(63)));
    assert_eq!(
        address(&e),
        Address::Evm("0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf".into())
    );
    assert_eq!(public_key_hex(&e).len(), 130);
    assert!(
        public_key_hex(&e)
            .starts_with("0479be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
    );
}

#[test]
fn ed25519_key_is_base58_of_the_little_endian_scalar() {
    let e = ejected::<Ed25519>(small(1));
    let mut le = [0u8; 32];
    le[0] = 1;
    assert_eq!(*key_text(&e), bs58::encode(le).into_string());
    // The compressed base point, 0x58 then 31 × 0x66.
    assert_eq!(
        address(&e),
        Address::Solana("6x5SYnLroiN7WYq8NQYU9KHcH4YjpBbwpUfVu3EB7ieH".into())
    );
    // A scalar whose top bytes are zero keeps all 32 bytes, least significant first.
    let mut be = [0u8; 32];
    be[30] = 0x12;
    be[31] = 0x34;
    let e = ejected::<Ed25519>(be);
    let decoded = bs58::decode(key_text(&e).as_str()).into_vec().unwrap();
    assert_eq!(decoded.len(), 32);
    assert_eq!(&decoded[..3], &[0x34, 0x12, 0x00]);
    assert_eq!(e.curve, Curve::Ed25519);
}

#[cfg(unix)]
#[test]
fn key_file_is_new_mode_0600_and_holds_the_key_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("eject-out-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("key.txt");
    let _ = std::fs::remove_file(&path);
    write_key_file(&path, "abc").unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc\n");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let err = write_key_file(&path, "other").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} already exists: refusing to overwrite it; the key was not written",
            path.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "abc\n");
    let missing = dir.join("no-such-dir").join("key.txt");
    assert!(matches!(
        write_key_file(&missing, "k"),
        Err(OutputError::Create { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
