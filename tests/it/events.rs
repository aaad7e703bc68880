//! The event bus between instances, through Redis and through PostgreSQL.

use std::time::Duration;

use tollgate::platform::events::BusMessage;

use crate::harness::TestApp;

#[tokio::test]
async fn an_event_published_on_one_instance_reaches_the_other() {
    for without_redis in [false, true] {
        let a = TestApp::spawn_with_redis(!without_redis).await;
        let b = a.spawn_sibling().await;
        let (mut received, connected) = b.state.events().subscribe();
        assert!(connected);
        a.state.events().publish("test.ping", "{\"n\":1}").unwrap();
        let message = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match received.recv().await {
                    Ok(BusMessage::Event { topic, payload }) if &*topic == "test.ping" => return payload,
                    Ok(_) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no event within 2 s (redis: {})", !without_redis));
        assert_eq!(&*message, "{\"n\":1}");
    }
}
