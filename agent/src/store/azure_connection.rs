//! Azure Storage connection strings (`AZURE_STORAGE_CONNECTION_STRING`), as
//! the portal, the CLI and Azurite hand them out:
//! `DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…;EndpointSuffix=core.windows.net`,
//! `BlobEndpoint=…;SharedAccessSignature=…`, or `UseDevelopmentStorage=true`.

/// What a connection string says about the blob service. Holds secrets:
/// no `Debug`, and errors never quote the string.
pub struct Connection {
    pub account: Option<String>,
    pub endpoint: Option<String>,
    pub account_key: Option<String>,
    pub sas_token: Option<String>,
}

/// Azurite's well-known development account (public, documented by Microsoft).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn parse(text: &str) -> Result<Connection, String> {
    let mut fields = std::collections::HashMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        // Values (keys, signatures) may contain '='; split at the first.
        let (name, value) = part.split_once('=').ok_or_else(|| {
            "AZURE_STORAGE_CONNECTION_STRING is not a list of Name=Value pairs separated by ';'"
                .to_string()
        })?;
        fields.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    if fields
        .get("usedevelopmentstorage")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        let proxy = fields
            .get("developmentstorageproxyuri")
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "http://127.0.0.1".into());
        return Ok(Connection {
            account: Some(DEV_ACCOUNT.into()),
            endpoint: Some(format!("{proxy}:10000/{DEV_ACCOUNT}")),
            account_key: Some(DEV_KEY.into()),
            sas_token: None,
        });
    }
    let account = fields.get("accountname").cloned();
    let endpoint = match (fields.get("blobendpoint"), &account) {
        (Some(e), _) => Some(e.trim_end_matches('/').to_string()),
        (None, Some(a)) => {
            let protocol = fields
                .get("defaultendpointsprotocol")
                .map(String::as_str)
                .unwrap_or("https");
            let suffix = fields
                .get("endpointsuffix")
                .map(String::as_str)
                .unwrap_or("core.windows.net");
            Some(format!("{protocol}://{a}.blob.{suffix}"))
        }
        (None, None) => None,
    };
    let connection = Connection {
        account,
        endpoint,
        account_key: fields.get("accountkey").cloned(),
        sas_token: fields.get("sharedaccesssignature").cloned(),
    };
    if connection.account_key.is_none() && connection.sas_token.is_none() {
        return Err(
            "AZURE_STORAGE_CONNECTION_STRING has neither AccountKey nor SharedAccessSignature"
                .into(),
        );
    }
    if connection.endpoint.is_none() {
        return Err("AZURE_STORAGE_CONNECTION_STRING names no AccountName or BlobEndpoint".into());
    }
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_strings_give_the_endpoint_and_key() {
        let c = parse("DefaultEndpointsProtocol=https;AccountName=acme;AccountKey=a2V5Kys=;EndpointSuffix=core.usgovcloudapi.net")
            .expect("parse");
        assert_eq!(c.account.as_deref(), Some("acme"));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://acme.blob.core.usgovcloudapi.net")
        );
        assert_eq!(c.account_key.as_deref(), Some("a2V5Kys="));
        assert!(c.sas_token.is_none());
    }

    #[test]
    fn sas_strings_and_development_storage() {
        let c = parse("BlobEndpoint=https://acme.blob.core.windows.net/;SharedAccessSignature=sv=2022-11-02&sig=abc%3D")
            .expect("parse");
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://acme.blob.core.windows.net")
        );
        assert_eq!(c.sas_token.as_deref(), Some("sv=2022-11-02&sig=abc%3D"));
        let dev = parse("UseDevelopmentStorage=true").expect("dev");
        assert_eq!(
            dev.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(dev.account.as_deref(), Some(DEV_ACCOUNT));
    }

    #[test]
    fn errors_never_quote_the_string() {
        for bad in [
            "AccountName=acme",
            "garbage-secret-value",
            "BlobEndpoint=x;AccountKey=",
        ] {
            if let Err(e) = parse(bad) {
                assert!(
                    !e.contains("garbage-secret-value") && !e.contains("acme"),
                    "{e}"
                );
            }
        }
        assert!(parse("AccountName=acme").is_err());
        assert!(parse("garbage-secret-value").is_err());
    }
}
