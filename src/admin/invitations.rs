//! "Invite Developers": validated, de-duplicated addresses and a pre-filled
//! mailto link (every address BCC'd, the registration page linked).

use serde_json::{json, Value};

use super::*;

pub(super) fn invite(ctx: &AdminContext<'_>, body: &[u8]) -> Result<ApiResponse, ApiResponse> {
    let request: InviteRequest = parse_body(body)?;
    let invitees = match &request.emails {
        StringOrList::One(text) => mailto::invitees(text.split(',')),
        StringOrList::List(list) => mailto::invitees(list.iter().map(String::as_str)),
    };
    if invitees.valid.len() > MAX_INVITATIONS {
        return Err(error(
            422,
            "too_many",
            format!("at most {MAX_INVITATIONS} addresses per invitation"),
        ));
    }
    let invalid: Vec<Value> = invitees
        .invalid
        .iter()
        .map(|(input, reason)| json!({"input": input, "reason": reason}))
        .collect();
    if invitees.valid.is_empty() {
        return Err(answer(
            422,
            json!({"error": "no_valid_addresses", "message": "no valid address to invite", "invalid": invalid}),
        ));
    }
    let body_text = ctx
        .config
        .invitation_body
        .replace("{registration_url}", &ctx.config.registration_url);
    let link = mailto::invitation(&invitees.valid, &ctx.config.invitation_subject, &body_text);
    Ok(answer(
        200,
        json!({"mailto": link, "invited": invitees.valid, "invalid": invalid, "duplicates": invitees.duplicates, "registration_url": ctx.config.registration_url}),
    ))
}
