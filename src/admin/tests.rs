//! Admin API logic: authentication, routing, validation, reads from the replica,
//! invitations, and the step machine's etcd round trips against the in-memory
//! etcd (`fake_etcd`), lost answers included. The end-to-end tests run the same
//! against a real etcd (tests/e2e_etcd.rs).

use serde_json::{Map, Value};

use super::*;
use crate::config::{DEFAULT_INVITATION_BODY, DEFAULT_INVITATION_SUBJECT};
use crate::directory::{lookup, Lookup, MemoryStore};
use crate::etcd::fake::FakeEtcd;
use crate::etcd::EtcdConfig;

fn config() -> AdminConfig {
    AdminConfig {
        prefix: "/_devportal".into(),
        tokens: vec![
            ("ops".into(), "0123456789abcdef".into()),
            ("ci".into(), "fedcba9876543210xx".into()),
        ],
        registration_url: "https://portal.example.com/portal/register".into(),
        invitation_subject: DEFAULT_INVITATION_SUBJECT.into(),
        invitation_body: DEFAULT_INVITATION_BODY.into(),
    }
}

fn etcd_directory() -> Directory {
    Directory::Etcd(EtcdConfig {
        members: crate::etcd::members::Members::new(vec!["etcd".into()]),
        grpc_upstream: None,
        authority: "etcd".into(),
        key_prefix: "/dp/".into(),
        timeout_ms: 1000,
        sync_interval_ms: 1000,
        change_log_retention_ms: 3_600_000,
    })
}

/// The namespace "ns" over `store`, at a fixed time.
fn context<'a>(config: &'a AdminConfig, directory: &'a Directory, store: &'a MemoryStore) -> AdminContext<'a> {
    AdminContext {
        config,
        directory,
        namespace: "ns",
        store,
        now_ms: 9,
        operation: "op-1".into(),
        approvals: Default::default(),
    }
}

fn respond(step: Step) -> (u32, Value) {
    match step {
        Step::Respond(response) => (response.status, serde_json::from_str(&response.body).unwrap()),
        Step::Call(..) => panic!("expected an answer, got an etcd call"),
    }
}

#[test]
fn tokens_are_checked_and_named() {
    let config = config();
    assert_eq!(authenticate(&config, &["Bearer 0123456789abcdef".into()]), Ok("ops"));
    assert_eq!(authenticate(&config, &["Bearer fedcba9876543210xx".into()]), Ok("ci"));
    for bad in [
        vec![],
        vec!["Bearer 0123456789abcde".into()],
        vec!["Bearer 0123456789abcdef0".into()],
        vec!["Basic 0123456789abcdef".into()],
        vec!["Bearer ".into()],
    ] {
        assert_eq!(authenticate(&config, &bad).unwrap_err().status, 401, "{bad:?}");
    }
    // Two Authorization headers are refused even if one is right.
    let twice = vec!["Bearer 0123456789abcdef".to_string(), "Bearer nope".to_string()];
    assert_eq!(authenticate(&config, &twice).unwrap_err().status, 401);
}

#[test]
fn routing() {
    let p = "/_devportal";
    assert_eq!(route(p, "GET", "/_devportal/developers"), Ok(Route::List));
    assert_eq!(route(p, "POST", "/_devportal/developers"), Ok(Route::Create));
    assert_eq!(
        route(p, "GET", "/_devportal/developers/Alice@Example.com"),
        Ok(Route::Get("alice@example.com".into()))
    );
    assert_eq!(
        route(p, "POST", "/_devportal/developers/a%2Bb@x.io/revoke"),
        Ok(Route::Act("a+b@x.io".into(), DeveloperAction::Revoke))
    );
    assert_eq!(route(p, "POST", "/_devportal/developers/bulk"), Ok(Route::Bulk));
    assert_eq!(
        route(p, "GET", "/_devportal/developers/a@x.io/mailto"),
        Ok(Route::Mailto("a@x.io".into()))
    );
    assert_eq!(route(p, "POST", "/_devportal/invitations"), Ok(Route::Invite));
    assert_eq!(
        route(p, "DELETE", "/_devportal/developers").unwrap_err().allow,
        Some("GET, POST")
    );
    assert_eq!(
        route(p, "GET", "/_devportal/developers/a@x.io/revoke")
            .unwrap_err()
            .status,
        405
    );
    assert_eq!(
        route(p, "POST", "/_devportal/developers/a@x.io/destroy")
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        route(p, "GET", "/_devportal/developers/not-an-address")
            .unwrap_err()
            .status,
        400
    );
    assert_eq!(route(p, "GET", "/_devportal/nothing").unwrap_err().status, 404);
    assert_eq!(route(p, "GET", "/_devportal").unwrap_err().status, 404);
}

#[test]
fn static_directory_serves_reads_and_refuses_writes() {
    let store = MemoryStore::default();
    crate::directory::seed::static_directory(
        &store,
        "ns",
        &[
            ("a@x.io".into(), Status::Approved),
            ("b@x.io".into(), Status::Requested),
        ],
        7,
    )
    .unwrap();
    let config = config();
    let ctx = context(&config, &Directory::Static, &store);
    let (status, body) = respond(start(&ctx, Route::List, Some("status=approved"), b"", "ops"));
    assert_eq!(status, 200);
    assert_eq!(body["total"], 1);
    assert_eq!(body["counts"]["requested"], 1);
    assert_eq!(body["developers"][0]["email"], "a@x.io");
    assert_eq!(
        body["developers"][0]["actions"],
        serde_json::json!(["revoke", "delete", "extend"])
    );
    let (status, body) = respond(start(&ctx, Route::Get("b@x.io".into()), None, b"", "ops"));
    assert_eq!((status, body["developer"]["status"].as_str()), (200, Some("requested")));
    assert_eq!(
        respond(start(&ctx, Route::Get("zed@x.io".into()), None, b"", "ops")).0,
        404
    );
    let (status, body) = respond(start(
        &ctx,
        Route::Act("a@x.io".into(), DeveloperAction::Revoke),
        None,
        b"",
        "ops",
    ));
    assert_eq!((status, body["error"].as_str()), (403, Some("read_only_directory")));
    assert_eq!(
        respond(start(&ctx, Route::Create, None, br#"{"email":"c@x.io"}"#, "ops")).0,
        403
    );
    let (status, body) = respond(start(&ctx, Route::Health, None, b"", "ops"));
    assert_eq!((status, body["source"].as_str()), (200, Some("static")));
}

#[test]
fn bad_input_is_refused_before_etcd() {
    let store = MemoryStore::default();
    let config = config();
    let directory = etcd_directory();
    let ctx = context(&config, &directory, &store);
    let cases: [(Route, Option<&str>, &[u8], u32); 12] = [
        (Route::Create, None, b"{", 400),
        (Route::Create, None, br#"{"email":"a@x.io","role":"admin"}"#, 400),
        (Route::Create, None, br#"{"email":"nope"}"#, 422),
        (Route::Create, None, br#"{"email":"a@x.io","status":"revoked"}"#, 422),
        (Route::Create, None, br#"{"email":"a@x.io","metadata":{"n":5}}"#, 422),
        (
            Route::Act("a@x.io".into(), DeveloperAction::Revoke),
            None,
            br#"{"reason":"x\u0000"}"#,
            422,
        ),
        (Route::Bulk, None, br#"{"action":"explode","emails":["a@x.io"]}"#, 404),
        (Route::Bulk, None, br#"{"action":"revoke","emails":[]}"#, 422),
        (
            Route::Bulk,
            None,
            br#"{"action":"revoke","emails":["a@x.io","A@x.io"]}"#,
            422,
        ),
        (Route::List, Some("status=pending"), b"", 400),
        (Route::List, Some("status=approved&per_page=100000"), b"", 400),
        (Route::Get("a@x.io".into()), None, b"{}", 400),
    ];
    for (route, query, body, expected) in cases {
        let label = format!("{route:?} {query:?} {}", String::from_utf8_lossy(body));
        assert_eq!(respond(start(&ctx, route, query, body, "ops")).0, expected, "{label}");
    }
    // A 400 names the field.
    for (route, body, message) in [
        (
            Route::Create,
            &br#"{"email":"a@x.io","role":"admin"}"#[..],
            "at `role`: unknown field `role`",
        ),
        (
            Route::Invite,
            br#"{"emails":["a@x.io",7]}"#,
            "at `emails[1]`: invalid type: integer `7`",
        ),
        (
            Route::Invite,
            br#"{"emails":7}"#,
            "at `emails`: invalid type: integer `7`, expected a string, or a list",
        ),
        (Route::Create, br#"{"email":"a@x.io"} {}"#, "trailing characters"),
    ] {
        let (status, answer) = respond(start(&ctx, route, None, body, "ops"));
        assert_eq!(status, 400);
        let text = answer["message"].as_str().unwrap_or_default();
        assert!(text.starts_with(message), "{answer}");
    }
    // A member named twice is refused, not read as its last value.
    let twice = br#"{"email":"a@x.io","status":"requested","status":"approved"}"#;
    let (status, answer) = respond(start(&ctx, Route::Create, None, twice, "ops"));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate field `status`"),
        "{answer}"
    );
    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(respond(start(&ctx, Route::Create, None, &huge, "ops")).0, 413);
    // Before the first sync the health page says so.
    assert_eq!(respond(start(&ctx, Route::Health, None, b"", "ops")).0, 503);
}

#[test]
fn invitations() {
    let store = MemoryStore::default();
    let config = config();
    let ctx = context(&config, &Directory::Static, &store);
    let (status, body) = respond(start(
        &ctx,
        Route::Invite,
        None,
        br#"{"emails":"a@x.io, b@x.io,a@x.io, bad"}"#,
        "ops",
    ));
    assert_eq!(status, 200);
    assert_eq!(body["invited"], serde_json::json!(["a@x.io", "b@x.io"]));
    assert_eq!(body["duplicates"], 1);
    assert_eq!(body["invalid"][0]["input"], "bad");
    let link = body["mailto"].as_str().unwrap();
    assert!(link.starts_with("mailto:?bcc=a@x.io,b@x.io&subject="), "{link}");
    assert!(
        link.contains("https%3A%2F%2Fportal.example.com%2Fportal%2Fregister"),
        "{link}"
    );
    let (status, _) = respond(start(&ctx, Route::Invite, None, br#"{"emails":["nope"]}"#, "ops"));
    assert_eq!(status, 422);
}

/// Garbage in, a clear answer out, never a panic: random bytes and mutated valid
/// inputs through every parser an admin request or an etcd answer reaches.
#[test]
fn parsers_never_panic_on_garbage() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: deterministic, so a failure reproduces.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let seeds: [&[u8]; 6] = [
        br#"{"email":"a@x.io","status":"approved","metadata":{"n":"v"}}"#,
        br#"{"action":"revoke","emails":["a@x.io"],"dry_run":true}"#,
        br#"{"emails":"a@x.io, b@x.io"}"#,
        br#"{"header":{"revision":"4"},"kvs":[{"key":"L3AvZGV2L2E=","mod_revision":"2","value":"dmE="}],"count":"3","more":true}"#,
        br#"{"header":{"revision":"5"},"succeeded":true,"responses":[{"response_range":{"count":"2"}}]}"#,
        b"/_devportal/developers/a%40x.io/revoke",
    ];
    let store = MemoryStore::default();
    let config = config();
    let directory = etcd_directory();
    let ctx = context(&config, &directory, &store);
    for round in 0..20_000 {
        let seed = seeds[round % seeds.len()];
        let mut input = seed.to_vec();
        match next() % 3 {
            0 => input = (0..next() % 64).map(|_| next() as u8).collect(),
            1 => {
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % input.len().max(1);
                    if let Some(byte) = input.get_mut(at) {
                        *byte = next() as u8;
                    }
                }
            }
            _ => input.truncate((next() as usize) % (input.len() + 1)),
        }
        let text = String::from_utf8_lossy(&input);
        let _ = crate::etcd::parse_range(200, &input);
        let _ = crate::etcd::parse_txn(200, &input);
        let _ = Developer::from_stored("a@x.io", &input);
        let _ = route("/_devportal", "POST", &text);
        let _ = route("/_devportal", "GET", &text);
        for route in [
            Route::Create,
            Route::Bulk,
            Route::Invite,
            Route::Act("a@x.io".into(), DeveloperAction::Revoke),
        ] {
            if let Step::Respond(response) = start(&ctx, route, None, &input, "ops") {
                // Bad input is the client's fault: a 4xx (or a 2xx for input that
                // is still valid), always with a JSON body.
                assert!(response.status < 500, "{} for {text:?}", response.status);
                assert!(
                    serde_json::from_str::<Value>(&response.body).is_ok(),
                    "{}",
                    response.body
                );
            }
        }
        let _ = start(&ctx, Route::List, Some(&text), b"", "ops");
    }
}

// ---- The step machine against the in-memory etcd ---------------------------------

/// What happens to each etcd call: answered, applied with its answer lost, or
/// lost before etcd saw it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    Answered,
    AppliedAnswerLost,
    Lost,
    /// Refused on the way (no member reachable): etcd never saw it.
    NotSent,
}

/// Runs `step` to its answer; `fates[n]` decides the n-th call (answered after
/// the list ends). Returns the answer and how many calls were made.
fn drive(ctx: &AdminContext<'_>, etcd: &mut FakeEtcd, mut step: Step, fates: &[Fate]) -> ((u32, Value), usize) {
    let mut calls = 0;
    loop {
        match step {
            Step::Respond(_) => return (respond(step), calls),
            Step::Call(request, task) => {
                let fate = fates.get(calls).copied().unwrap_or(Fate::Answered);
                calls += 1;
                let answer = match fate {
                    Fate::Answered => Ok(etcd.answer(&request)),
                    Fate::AppliedAnswerLost => {
                        etcd.answer(&request);
                        Err(EtcdError::Unreachable("timed out".into()))
                    }
                    Fate::Lost => Err(EtcdError::Unreachable("timed out".into())),
                    Fate::NotSent => Err(EtcdError::NotSent("connection refused".into())),
                };
                step = resume(ctx, *task, answer);
            }
        }
    }
}

fn stored(etcd: &FakeEtcd, key: &str) -> Option<Developer> {
    let (value, _, _) = etcd.kvs.get(key.as_bytes())?;
    Developer::from_stored("x@x.io", value).ok()
}

fn seeded_etcd() -> FakeEtcd {
    let mut etcd = FakeEtcd::default();
    let alice = Developer::register("alice@x.io", Status::Approved, Map::new(), "t", 1);
    etcd.put("/dp/dev/alice@x.io", &alice.to_stored());
    etcd
}

fn revoke_alice(ctx: &AdminContext<'_>, etcd: &mut FakeEtcd, fates: &[Fate]) -> ((u32, Value), usize) {
    let route = Route::Act("alice@x.io".into(), DeveloperAction::Revoke);
    let step = start(ctx, route, None, br#"{"reason":"contract ended"}"#, "ops");
    drive(ctx, etcd, step, fates)
}

#[test]
fn a_change_records_its_operation_in_the_history() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    let mut etcd = seeded_etcd();
    let ((status, body), calls) = revoke_alice(&ctx, &mut etcd, &[]);
    assert_eq!((status, calls), (200, 2), "{body}");
    assert_eq!(body["operation"], "op-1");
    let alice = stored(&etcd, "/dp/dev/alice@x.io").unwrap();
    assert_eq!(alice.status, Status::Revoked);
    assert!(alice.made_by("op-1"));
    assert_eq!(lookup(&store, "ns", "alice@x.io"), Lookup::Found(Status::Revoked));
}

#[test]
fn a_lost_answer_to_a_write_that_committed_is_found_by_reading_back() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    let mut etcd = seeded_etcd();
    let ((status, body), calls) = revoke_alice(&ctx, &mut etcd, &[Fate::Answered, Fate::AppliedAnswerLost]);
    assert_eq!((status, calls), (200, 3), "{body}");
    assert_eq!(body["confirmed_by_read_back"], true);
    assert_eq!(body["developer"]["history"][1]["reason"], "contract ended");
    assert_eq!(lookup(&store, "ns", "alice@x.io"), Lookup::Found(Status::Revoked));
    assert_eq!(
        stored(&etcd, "/dp/dev/alice@x.io").unwrap().history.len(),
        2,
        "applied once"
    );
}

#[test]
fn a_write_lost_before_etcd_saw_it_is_sent_again_once() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    let mut etcd = seeded_etcd();
    let ((status, body), calls) = revoke_alice(&ctx, &mut etcd, &[Fate::Answered, Fate::Lost]);
    assert_eq!(
        (status, calls),
        (200, 4),
        "read, lost write, read-back, write again: {body}"
    );
    assert_eq!(
        stored(&etcd, "/dp/dev/alice@x.io").unwrap().history.len(),
        2,
        "applied once"
    );

    // Lost twice: the outcome is unknown, and the answer says how to find out.
    let mut etcd = seeded_etcd();
    let fates = [Fate::Answered, Fate::Lost, Fate::Answered, Fate::Lost, Fate::Answered];
    let ((status, body), _) = revoke_alice(&ctx, &mut etcd, &fates);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "outcome_unknown");
    assert_eq!(body["operation"], "op-1");
    // The read-back itself lost: unknown, never "nothing was changed".
    let mut etcd = seeded_etcd();
    let ((status, body), _) = revoke_alice(&ctx, &mut etcd, &[Fate::Answered, Fate::AppliedAnswerLost, Fate::Lost]);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "outcome_unknown");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("/_devportal/developers/alice@x.io"));
    assert_eq!(
        stored(&etcd, "/dp/dev/alice@x.io").unwrap().status,
        Status::Revoked,
        "it did commit"
    );
}

#[test]
fn calls_that_never_reached_etcd_are_sent_again_at_once() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    // The read, then the write, each refused once on the way (a dead member).
    let mut etcd = seeded_etcd();
    let ((status, body), calls) = revoke_alice(&ctx, &mut etcd, &[Fate::NotSent, Fate::Answered, Fate::NotSent]);
    assert_eq!(
        (status, calls),
        (200, 4),
        "read twice, write twice, no read-back: {body}"
    );
    assert!(body.get("confirmed_by_read_back").is_none());
    assert_eq!(
        stored(&etcd, "/dp/dev/alice@x.io").unwrap().history.len(),
        2,
        "applied once"
    );
    // Refused twice: nothing was sent, and the answer may say so.
    let mut etcd = seeded_etcd();
    let ((status, body), _) = revoke_alice(&ctx, &mut etcd, &[Fate::NotSent, Fate::NotSent]);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("nothing was changed"),
        "{body}"
    );
    // A registration too.
    let mut etcd = FakeEtcd::default();
    let ((status, _), calls) = drive(
        &ctx,
        &mut etcd,
        register(&ctx, "bob@x.io", &self_service()),
        &[Fate::NotSent, Fate::Answered, Fate::NotSent],
    );
    assert_eq!((status, calls), (201, 4));
}

#[test]
fn a_lost_answer_after_someone_else_changed_the_developer_is_a_conflict() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    let mut etcd = seeded_etcd();
    let route = Route::Act("alice@x.io".into(), DeveloperAction::Revoke);
    let Step::Call(read, task) = start(&ctx, route, None, b"", "ops") else {
        panic!()
    };
    let Step::Call(_write, task) = resume(&ctx, *task, Ok(etcd.answer(&read))) else {
        panic!()
    };
    // Our write never arrives; another admin deletes alice meanwhile.
    etcd.delete("/dp/dev/alice@x.io");
    let step = resume(&ctx, *task, Err(EtcdError::Unreachable("timed out".into())));
    let ((status, body), _) = drive(&ctx, &mut etcd, step, &[]);
    assert_eq!(status, 409, "{body}");
}

#[test]
fn deleted_developers_keep_their_history_and_show_it_when_they_return() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    let mut etcd = seeded_etcd();
    revoke_alice(&ctx, &mut etcd, &[]);
    let route = Route::Act("alice@x.io".into(), DeveloperAction::Delete);
    let ((status, body), _) = drive(
        &ctx,
        &mut etcd,
        start(&ctx, route, None, br#"{"reason":"gone"}"#, "ops"),
        &[],
    );
    assert_eq!(status, 200, "{body}");
    assert!(!etcd.kvs.contains_key(b"/dp/dev/alice@x.io".as_slice()));
    let archived = stored(&etcd, "/dp/deleted/alice@x.io").unwrap();
    assert_eq!(archived.history.len(), 3);
    assert_eq!(archived.history[2].to, None);
    assert_eq!(archived.history[2].reason.as_deref(), Some("gone"));

    // Registering again (self-service) brings the past back, newest last.
    let ((status, body), _) = drive(&ctx, &mut etcd, register(&ctx, "alice@x.io", &self_service()), &[]);
    assert_eq!(status, 201, "{body}");
    let history = body["developer"]["history"].as_array().unwrap().clone();
    let reasons: Vec<&Value> = history.iter().map(|t| &t["reason"]).collect();
    assert_eq!(history.len(), 4, "{history:?}");
    assert_eq!(*reasons[1], "contract ended");
    assert_eq!(history[2]["to"], "deleted");
    assert_eq!(history[3]["actor"], "self-service");
    assert_eq!(stored(&etcd, "/dp/dev/alice@x.io").unwrap().status, Status::Requested);
}

#[test]
fn creates_survive_lost_answers_too() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    // Committed, answer lost: found by its operation.
    let mut etcd = FakeEtcd::default();
    let ((status, body), calls) = drive(
        &ctx,
        &mut etcd,
        register(&ctx, "bob@x.io", &self_service()),
        &[Fate::Answered, Fate::AppliedAnswerLost],
    );
    assert_eq!((status, calls), (201, 3), "{body}");
    assert_eq!(body["confirmed_by_read_back"], true);
    // Lost before etcd saw it: sent again.
    let mut etcd = FakeEtcd::default();
    let ((status, _), calls) = drive(
        &ctx,
        &mut etcd,
        register(&ctx, "bob@x.io", &self_service()),
        &[Fate::Answered, Fate::Lost],
    );
    assert_eq!((status, calls), (201, 4));
    // Someone else registered bob meanwhile: a conflict, not ours.
    let mut etcd = FakeEtcd::default();
    etcd.put(
        "/dp/dev/bob@x.io",
        &Developer::register("bob@x.io", Status::Approved, Map::new(), "x", 1).to_stored(),
    );
    let ((status, body), _) = drive(
        &ctx,
        &mut etcd,
        register(&ctx, "bob@x.io", &self_service()),
        &[Fate::Answered, Fate::Lost],
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["developer"]["status"], "approved");
}

fn self_service() -> crate::directory::rules::FirstStatus {
    crate::directory::rules::first_status(&[], "", None)
}

/// A developer's document and a page of a tab are read from etcd (the replica
/// holds only records and the tabs' order): a page of more than one chunk, a
/// read that fails once on the way, an absent developer, and etcd gone.
#[test]
fn reads_come_from_etcd_in_chunks() {
    let (config, directory, store) = (config(), etcd_directory(), MemoryStore::default());
    let ctx = context(&config, &directory, &store);
    let mut etcd = FakeEtcd::default();
    let mut listed = replica::Known::new();
    for i in 0..250u64 {
        let email = format!("d{i:03}@x.io");
        let developer = Developer::register(&email, Status::Approved, Map::new(), "t", i);
        etcd.put(&format!("/dp/dev/{email}"), &developer.to_stored());
        let listed_as = replica::Listed {
            status: Some(Status::Approved),
            updated_ms: i,
            expires_ms: None,
        };
        listed.insert(email, listed_as);
    }
    replica::write_lists(&store, "ns", &listed, replica::Tabs::ALL, replica::Parts::ALL).unwrap();

    let step = start(&ctx, Route::List, Some("status=approved&per_page=240"), b"", "ops");
    let ((status, body), calls) = drive(&ctx, &mut etcd, step, &[Fate::Answered, Fate::NotSent]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(calls, 4, "three chunks of at most {READ_CHUNK}, the second sent twice");
    let emails: Vec<&str> = body["developers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 240);
    assert_eq!((emails[0], emails[239]), ("d249@x.io", "d010@x.io"), "newest first");
    assert_eq!(body["total"], 250);
    assert!(body["developers"][0]["revision"].as_u64().unwrap() > 0);

    let step = start(&ctx, Route::Get("d007@x.io".into()), None, b"", "ops");
    let ((status, body), _) = drive(&ctx, &mut etcd, step, &[]);
    assert_eq!((status, body["developer"]["email"].as_str()), (200, Some("d007@x.io")));
    let step = start(&ctx, Route::Get("nobody@x.io".into()), None, b"", "ops");
    assert_eq!(drive(&ctx, &mut etcd, step, &[]).0 .0, 404);
    let step = start(&ctx, Route::Mailto("nobody@x.io".into()), None, b"", "ops");
    assert_eq!(drive(&ctx, &mut etcd, step, &[]).0 .0, 404);
    // etcd cannot answer twice: 503, like a write.
    let step = start(&ctx, Route::Get("d007@x.io".into()), None, b"", "ops");
    let ((status, body), calls) = drive(&ctx, &mut etcd, step, &[Fate::Lost, Fate::Lost]);
    assert_eq!(
        (status, body["error"].as_str(), calls),
        (503, Some("directory_unavailable"), 2)
    );
}
