//! `GET /account`: the signed-in person's own account — change the password, see and
//! end sessions, make and revoke API tokens with their scopes explained. `GET /reset`:
//! the public page a reset link opens (its token is in the URL fragment, read by the
//! script and never sent to the server but in the reset call).

use super::layout::{self, Live, Nav};
use super::{error_page, PageResult, PageUser};
use crate::api::auth::Scope;
use crate::api::error::ApiError;
use crate::api::ApiState;
use crate::store::AccountStore;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use maud::html;

/// `GET /account`.
pub(crate) async fn page(State(s): State<ApiState>, PageUser(p): PageUser) -> PageResult {
    let fail = |e: crate::store::StoreError| error_page(Some(&p), ApiError::from(e));
    let sessions = s
        .store
        .user_sessions(p.user.id, Utc::now())
        .await
        .map_err(fail)?;
    let tokens = s.store.list_api_tokens(p.user.id).await.map_err(fail)?;
    let current = p.session();
    let body = html! {
        section.card #password aria-labelledby="password-h" {
            h2 #password-h { "Password" }
            p.muted { "Changing it ends your other sessions (other browsers sign in again)." }
            form.api-form #password-form data-method="POST" data-url="/api/v1/me/password" {
                div.field { label for="current-password" { "Current password" } input #current-password type="password" name="current_password" autocomplete="current-password" required; }
                div.field { label for="new-password" { "New password (12 characters or more)" } input #new-password type="password" name="new_password" autocomplete="new-password" minlength="12" required; }
                button type="submit" { "Change password" }
                span.form-error role="alert" {}
            }
        }
        section.card #sessions aria-labelledby="sessions-h" {
            h2 #sessions-h { "Sessions" }
            div.scroll {
                table #session-table {
                    thead { tr { th scope="col" { "Signed in" } th scope="col" { "Last used" } th scope="col" { "From" } th scope="col" { "" } } }
                    tbody {
                        @for x in &sessions {
                            tr data-session=(x.id) {
                                td { (layout::time(x.created_at)) @if Some(x.id) == current { " " span.muted { "(this one)" } } }
                                td { (layout::time(x.last_seen_at)) }
                                td { (x.from_address.as_deref().unwrap_or("")) }
                                td {
                                    @if Some(x.id) != current {
                                        form.api-form.inline data-method="DELETE" data-url=(format!("/api/v1/me/sessions/{}", x.id)) {
                                            button.link.danger type="submit" { "End" }
                                            span.form-error role="alert" {}
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card #tokens aria-labelledby="tokens-h" {
            h2 #tokens-h { "API tokens" }
            p.muted { "A token acts as you, limited to its scopes; it is shown once." }
            form #token-form {
                div.field { label for="token-name" { "Name" } input #token-name name="name" required maxlength="64" placeholder="scada-export"; }
                div.field { label for="token-days" { "Expires in days" } input #token-days name="expires_in_days" type="number" min="1"; }
                fieldset.scopes {
                    legend { "Scopes" }
                    @for scope in Scope::ALL {
                        label.scope {
                            input type="checkbox" name="scopes" value=(scope.as_str()) checked[scope == Scope::Read];
                            " " code { (scope.as_str()) } " — " span.muted { (scope.meaning()) }
                        }
                    }
                }
                button type="submit" { "Make token" }
                p.form-error role="alert" {}
                p #token-result.form-result role="status" {}
            }
            div.scroll {
                table #token-table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Scopes" } th scope="col" { "Expires" } th scope="col" { "Last used" } th scope="col" { "" } } }
                    tbody {
                        @for t in tokens.iter().filter(|t| t.revoked_at.is_none()) {
                            tr data-token=(t.id) {
                                th scope="row" { (t.name) }
                                td { (t.scopes.join(", ")) }
                                td { (layout::time_opt(t.expires_at)) }
                                td { (layout::time_opt(t.last_used_at)) }
                                td {
                                    form.api-form.inline data-method="DELETE" data-url=(format!("/api/v1/tokens/{}", t.id)) data-confirm=(format!("Revoke {}?", t.name)) {
                                        button.link.danger type="submit" { "Revoke" }
                                        span.form-error role="alert" {}
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(
        &p,
        Nav::Account,
        "Your account",
        &[],
        Live::Indicator,
        body,
    ))
}

/// `GET /reset`: set a new password with a reset link.
pub(crate) async fn reset() -> Response {
    layout::bare(
        "Reset your password",
        html! {
            section.card.login {
                h1 { "Chitti" }
                p.muted { "Choose a new password (12 characters or more)." }
                form #reset-form {
                    div.field {
                        label for="reset-password" { "New password" }
                        input #reset-password type="password" name="new_password" autocomplete="new-password" minlength="12" required autofocus;
                    }
                    button #reset-submit type="submit" { "Set password" }
                    p #reset-error.form-error role="alert" {}
                    p #reset-done.form-result role="status" {}
                }
            }
        },
    )
    .into_response()
}
