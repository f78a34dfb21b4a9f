//! The CLI's HTTP client: a `client_credentials` token from the token endpoint, then
//! SCIM and admin API calls with it. Errors carry the server's own explanation.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use url::Url;

use super::Connect;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the server: {0}")]
    Http(String),
    #[error("the server answered {status}: {detail}")]
    Api { status: u16, detail: String },
    #[error("no account matches `{0}`")]
    NotFound(String),
}

/// A connected admin client.
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: String,
}

/// The explanation in an error body: SCIM's `detail`, OAuth's `error_description`.
fn explain(status: StatusCode, body: &str) -> CliError {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let detail = v["detail"]
        .as_str()
        .or_else(|| v["error_description"].as_str())
        .or_else(|| v["error"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    CliError::Api {
        status: status.as_u16(),
        detail,
    }
}

impl Client {
    /// Get a token for the configured client.
    pub async fn connect(c: &Connect) -> Result<Client, CliError> {
        let server = c.server.trim_end_matches('/').to_string();
        Url::parse(&server)
            .map_err(|e| CliError::Usage(format!("--server `{}` is not a URL: {e}", c.server)))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::Http(e.to_string()))?;
        let res = http
            .post(format!("{server}/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| CliError::Http(e.to_string()))?;
        let status = res.status();
        let body = res
            .text()
            .await
            .map_err(|e| CliError::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(explain(status, &body));
        }
        let v: Value = serde_json::from_str(&body)
            .map_err(|_| CliError::Http("the token endpoint did not answer JSON".into()))?;
        let token = v["access_token"]
            .as_str()
            .ok_or_else(|| CliError::Http("the token answer has no access_token".into()))?
            .to_string();
        Ok(Client {
            http,
            server,
            token,
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<Url, CliError> {
        let mut url = Url::parse(&format!("{}{path}", self.server))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        if !query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let mut req = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, crate::scim::MEDIA_TYPE)
                .body(b.to_string());
        }
        let res = req
            .send()
            .await
            .map_err(|e| CliError::Http(e.to_string()))?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| CliError::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(explain(status, &text));
        }
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|_| CliError::Http("the server did not answer JSON".into()))
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        Ok(self
            .call(Method::GET, self.url(path, query)?, None)
            .await?
            .unwrap_or(Value::Null))
    }

    /// Every account matching `filter`, page by page.
    pub async fn list(&self, filter: Option<&str>) -> Result<Vec<Value>, CliError> {
        self.list_at("/scim/v2/Users", filter).await
    }

    /// Every resource at a SCIM list endpoint matching `filter`, page by page.
    pub async fn list_at(&self, path: &str, filter: Option<&str>) -> Result<Vec<Value>, CliError> {
        let mut out = Vec::new();
        loop {
            let mut query = vec![
                ("startIndex", (out.len() + 1).to_string()),
                ("count", "200".to_string()),
            ];
            if let Some(f) = filter {
                query.push(("filter", f.to_string()));
            }
            let page = self.get(path, &query).await?;
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap_or(0);
            let got = items.len();
            out.extend(items);
            if got == 0 || out.len() as u64 >= total {
                return Ok(out);
            }
        }
    }

    /// One account, by id or by username.
    pub async fn find(&self, user: &str) -> Result<Value, CliError> {
        match self
            .get(&format!("/scim/v2/Users/{}", urlencode(user)), &[])
            .await
        {
            Ok(found) => return Ok(found),
            Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let quoted = serde_json::to_string(user).unwrap_or_default();
        let matches = self.list(Some(&format!("userName eq {quoted}"))).await?;
        matches
            .into_iter()
            .next()
            .ok_or_else(|| CliError::NotFound(user.to_string()))
    }

    pub async fn create(&self, body: &Value) -> Result<Value, CliError> {
        self.create_at("/scim/v2/Users", body).await
    }

    /// POST a resource to a SCIM endpoint.
    pub async fn create_at(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let url = self.url(path, &[])?;
        Ok(self
            .call(Method::POST, url, Some(body))
            .await?
            .unwrap_or(Value::Null))
    }

    /// PATCH a resource.
    pub async fn patch_at(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let url = self.url(path, &[])?;
        Ok(self
            .call(Method::PATCH, url, Some(body))
            .await?
            .unwrap_or(Value::Null))
    }

    pub async fn delete_at(&self, path: &str) -> Result<(), CliError> {
        let url = self.url(path, &[])?;
        self.call(Method::DELETE, url, None).await.map(|_| ())
    }

    /// One group, by id or by display name.
    pub async fn find_group(&self, group: &str) -> Result<Value, CliError> {
        match self
            .get(&format!("/scim/v2/Groups/{}", urlencode(group)), &[])
            .await
        {
            Ok(found) => return Ok(found),
            Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let quoted = serde_json::to_string(group).unwrap_or_default();
        let matches = self
            .list_at("/scim/v2/Groups", Some(&format!("displayName eq {quoted}")))
            .await?;
        matches
            .into_iter()
            .next()
            .ok_or_else(|| CliError::NotFound(group.to_string()))
    }

    pub async fn set_active(&self, id: &str, active: bool) -> Result<Value, CliError> {
        let body = json!({
            "schemas": [crate::scim::PATCH_OP],
            "Operations": [{ "op": "replace", "path": "active", "value": active }],
        });
        let url = self.url(&format!("/scim/v2/Users/{}", urlencode(id)), &[])?;
        Ok(self
            .call(Method::PATCH, url, Some(&body))
            .await?
            .unwrap_or(Value::Null))
    }

    pub async fn set_email_verified(&self, id: &str, verified: bool) -> Result<Value, CliError> {
        let path = format!("{}:emailVerified", crate::scim::USHER_USER_SCHEMA);
        let body = json!({
            "schemas": [crate::scim::PATCH_OP],
            "Operations": [{ "op": "replace", "path": path, "value": verified }],
        });
        let url = self.url(&format!("/scim/v2/Users/{}", urlencode(id)), &[])?;
        Ok(self
            .call(Method::PATCH, url, Some(&body))
            .await?
            .unwrap_or(Value::Null))
    }

    pub async fn delete(&self, id: &str) -> Result<(), CliError> {
        let url = self.url(&format!("/scim/v2/Users/{}", urlencode(id)), &[])?;
        self.call(Method::DELETE, url, None).await.map(|_| ())
    }

    pub async fn reset_totp(&self, id: &str) -> Result<Value, CliError> {
        let url = self.url(
            &format!("/admin/v1/users/{}/reset-totp", urlencode(id)),
            &[],
        )?;
        Ok(self
            .call(Method::POST, url, None)
            .await?
            .unwrap_or(Value::Null))
    }

    pub async fn unlock(&self, id: &str) -> Result<Value, CliError> {
        let url = self.url(&format!("/admin/v1/users/{}/unlock", urlencode(id)), &[])?;
        Ok(self
            .call(Method::POST, url, None)
            .await?
            .unwrap_or(Value::Null))
    }

    pub async fn sign_out(&self, id: &str) -> Result<Value, CliError> {
        let url = self.url(&format!("/admin/v1/users/{}/sign-out", urlencode(id)), &[])?;
        Ok(self
            .call(Method::POST, url, None)
            .await?
            .unwrap_or(Value::Null))
    }

    pub async fn events(&self, query: &[(&str, String)]) -> Result<Vec<Value>, CliError> {
        let answer = self.get("/admin/v1/events", query).await?;
        Ok(answer["events"].as_array().cloned().unwrap_or_default())
    }
}

/// A path segment, percent-encoded.
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
