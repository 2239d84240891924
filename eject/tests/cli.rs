//! The tool through its binary: what it writes, prints and refuses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

const BIN: &str = env!("CARGO_BIN_EXE_portal-backup-eject");

/// Portal's published example (eject.js), in Portal's shapes, with a client id.
struct Example {
    curve: &'static str,
    pubkey: (&'static str, &'static str),
    client: (&'static str, &'static str),
    custodian: (&'static str, &'static str),
    key: &'static str,
    address: &'static str,
}

const SECP256K1: Example = Example {
    curve: "SECP256K1",
    pubkey: (
        "95905857107301357381155516338362784207317010673073787675690511286760317802272",
        "84471157200556546968836560278865290072494471108462199268947632974788956557127",
    ),
    client: (
        "20239155973571792266164364275964524242029729063304656485165418448115248082802",
        "86868548274168401139460440216870783092063038666835278534832349302396154314237",
    ),
    custodian: (
        "35548699788994050550146262427737959890227338646889173786783560192790230768775",
        "18215211649252066570518778981645428771794111974791698622992184423457425369616",
    ),
    key: "de555f8f7552fb503e48ccbc1e200d26ea3f8dc24fc236a1ff6a2be9c36a915c",
    address: "EVM address: 0x755e7572e8916802f9DD75EEb00992E2d53aA345",
};

const ED25519: Example = Example {
    curve: "ED25519",
    pubkey: (
        "4155079341668263211468645490523568285081269952458706525782542662765297681720",
        "33170931963135572976162508038363263257341896290508808710058213404228890998925",
    ),
    client: (
        "209966714242237444698175757090286175213972386782216686905361352132244887465",
        "674076495015830984277819692722227700482715353628168867159273906537386870716",
    ),
    custodian: (
        "3972754397714006467384117681683827603947104866080154044667201466825208338771",
        "4645588044633541551475641810441554672302500022056130044324874662839150929177",
    ),
    key: "7QouaVEmauRJgEhLXEaj3Et8VZXfuYzHYLw35FDZVFau",
    address: "Solana address: AWG2mxFQ8wrhqXVfRMn6sSjLRb8sfTph7ANVWnLSELsJ",
};

impl Example {
    /// The client backup share as Portal sends it: base64 of its JSON.
    fn client_share(&self) -> String {
        let json = serde_json::json!({
            "clientId": "example-client", "backupSharePairId": "pair-1",
            "share": self.client.0,
            "pubkey": {"x": self.pubkey.0, "y": self.pubkey.1},
            "bks": {"client": {"x": self.client.1, "rank": 0},
                    "server": {"x": self.custodian.1, "rank": 0}},
        });
        STANDARD.encode(json.to_string())
    }

    /// The custodian backup share: flat JSON.
    fn custodian_share(&self, client_id: &str) -> String {
        serde_json::json!({
            "clientId": client_id, "custodianId": "custodian-1",
            "x": self.pubkey.0, "y": self.pubkey.1,
            "clientBk": self.client.1, "serverBk": self.custodian.1,
            "share": self.custodian.0,
        })
        .to_string()
    }
}

/// A directory of its own for one test, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("eject-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn eject(curve: &str, client: &Path, custodian: &Path, out: &[&str]) -> Output {
    Command::new(BIN)
        .args(["--curve", curve, "--client-share"])
        .arg(client)
        .arg("--custodian-share")
        .arg(custodian)
        .args(out)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn assert_no_share(output: &Output, example: &Example) {
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    for share in [example.client.0, example.custodian.0] {
        assert!(!all.contains(&share[..20]), "a share was printed");
    }
}

#[test]
fn a_good_pair_writes_a_0600_key_file_and_prints_the_address() {
    use std::os::unix::fs::PermissionsExt;
    for example in [SECP256K1, ED25519] {
        let dir = Scratch::new(&format!("good-{}", example.curve));
        // ED25519's client half as a stored backup opens: the /v1/backup entry {"share", "id"}.
        let client_text = match example.curve {
            "ED25519" => {
                serde_json::json!({"share": example.client_share(), "id": "pair-1"}).to_string()
            }
            _ => example.client_share(),
        };
        let client = dir.file("client.b64", &client_text);
        let custodian = dir.file("custodian.json", &example.custodian_share("example-client"));
        let out = dir.path("key.txt");
        let output = eject(
            example.curve,
            &client,
            &custodian,
            &["--out", out.to_str().unwrap()],
        );
        assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{}\n", example.key)
        );
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let stdout = text(&output.stdout);
        assert!(stdout.contains(example.address), "{stdout}");
        assert!(stdout.contains(&format!("curve: {}", example.curve)));
        assert!(stdout.contains("proof: d·G equals the wallet's public key"));
        assert!(
            !stdout.contains(example.key),
            "the key went to the terminal"
        );
        assert_no_share(&output, &example);
    }
}

#[test]
fn print_key_prints_the_key_only_when_asked_and_writes_no_file() {
    let dir = Scratch::new("print");
    let client = dir.file("client.b64", &ED25519.client_share());
    let custodian = dir.file("custodian.json", &ED25519.custodian_share("example-client"));
    let output = eject("ED25519", &client, &custodian, &["--print-key"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains(&format!("private key: {}\n", ED25519.key)));
    assert!(stdout.contains(ED25519.address));
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 2);
    assert_no_share(&output, &ED25519);
}

#[test]
fn a_mismatched_pair_exits_1_and_writes_nothing() {
    let dir = Scratch::new("mismatch");
    let client = dir.file("client.b64", &SECP256K1.client_share());
    let out = dir.path("key.txt");
    let cases = [
        (
            SECP256K1.custodian_share("another-client"),
            "the two halves name different clients (clientId)",
        ),
        // The other curve's custodian half: another wallet.
        (
            ED25519.custodian_share("example-client"),
            "the two halves name different wallet public keys (pubkey; x, y)",
        ),
        (
            SECP256K1
                .custodian_share("example-client")
                .replace(SECP256K1.custodian.0, "123456789"),
            "the combined key does not give the wallet's public key (d·G ≠ pubkey): refused",
        ),
    ];
    for (custodian_share, want) in cases {
        let custodian = dir.file("custodian.json", &custodian_share);
        let output = eject(
            "SECP256K1",
            &client,
            &custodian,
            &["--out", out.to_str().unwrap()],
        );
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(
            text(&output.stderr),
            format!("portal-backup-eject: {want}\n")
        );
        assert!(output.stdout.is_empty());
        assert!(!out.exists(), "a key file was written");
        assert_no_share(&output, &SECP256K1);
    }
}

#[test]
fn an_existing_out_file_is_refused_and_kept() {
    let dir = Scratch::new("exists");
    let client = dir.file("client.b64", &SECP256K1.client_share());
    let custodian = dir.file(
        "custodian.json",
        &SECP256K1.custodian_share("example-client"),
    );
    let out = dir.file("key.txt", "keep me\n");
    let output = eject(
        "SECP256K1",
        &client,
        &custodian,
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        format!(
            "portal-backup-eject: {} already exists: refusing to overwrite it; the key was not written\n",
            out.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me\n");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_stored_message_without_its_context_is_refused_with_the_way_to_open_it() {
    let dir = Scratch::new("esdk");
    let message = STANDARD.encode([0x02, 0x04, 0x78, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let client = dir.file("client.msg.b64", &message);
    let custodian = dir.file(
        "custodian.json",
        &SECP256K1.custodian_share("example-client"),
    );
    let out = dir.path("key.txt");
    let output = eject(
        "SECP256K1",
        &client,
        &custodian,
        &["--out", out.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        text(&output.stderr),
        "portal-backup-eject: client backup share: a stored half opens only under its exact \
         context: give --client-id and --backup-share-pair-id\n"
    );
    assert!(!out.exists());
}

#[test]
fn a_wrong_command_line_exits_2_with_one_line() {
    let output = Command::new(BIN).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        text(&output.stderr),
        "portal-backup-eject: --curve is required (see --help)\n"
    );
    let output = Command::new(BIN)
        .args([
            "--curve",
            "SECP256K1",
            "--client-share",
            "a",
            "--custodian-share",
            "b",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(text(&output.stderr).lines().count(), 1);
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).starts_with("usage: portal-backup-eject --curve"));
}
