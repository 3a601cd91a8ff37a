//! Metric and label names, from the orderscope catalogue (CONVENTIONS.md "HTTP").

pub(crate) use orderscope_metrics::catalogue::labels::{
    ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE, SERVER_ADDRESS,
};
pub(crate) use orderscope_metrics::catalogue::values::UNMATCHED_ROUTE;
pub(crate) use orderscope_metrics::catalogue::{
    HTTP_CLIENT_REQUEST_DURATION as CLIENT_REQUEST_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS as ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_DURATION as REQUEST_DURATION,
};

#[cfg(test)]
mod tests {
    use orderscope_metrics::catalogue::{find, values};

    use super::*;

    #[test]
    fn labels_match_the_catalogue() {
        let server = find(REQUEST_DURATION).expect("in the catalogue");
        for label in [
            HTTP_REQUEST_METHOD,
            HTTP_ROUTE,
            HTTP_RESPONSE_STATUS_CODE,
            ERROR_TYPE,
        ] {
            assert!(server.labels.contains(&label), "{label}");
        }
        let active = find(ACTIVE_REQUESTS).expect("in the catalogue");
        assert_eq!(active.labels, [HTTP_REQUEST_METHOD, HTTP_ROUTE]);
        let client = find(CLIENT_REQUEST_DURATION).expect("in the catalogue");
        assert!(client.labels.contains(&SERVER_ADDRESS));
    }

    #[test]
    fn values_match_the_catalogue() {
        use crate::common::MethodKind;
        use crate::server::route_values;
        assert_eq!(MethodKind::Other.as_str(), values::OTHER_METHOD);
        let (panic, cancelled) = route_values();
        assert_eq!(panic, values::PANIC);
        assert_eq!(cancelled, values::CANCELLED);
    }
}
