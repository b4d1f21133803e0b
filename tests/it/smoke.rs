use crate::common::*;

#[tokio::test]
async fn a_token_reaches_the_upstream_as_identity() {
    let up = upstream::Upstream::start().await;
    let gw = TestGateway::start(&base_config(&up.url(), &nowhere())).await;
    let token = token(&gw.gw, "o-alice");
    let res = client()
        .get(gw.url("/api/x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = up.last().unwrap();
    assert_eq!(got.header("x-wx-openid"), Some("o-alice"));
    assert_eq!(got.header("x-wx-appid"), Some(APPID));
    assert_eq!(got.header("authorization"), None);
}
