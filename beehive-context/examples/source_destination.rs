//! Go beehive's test program (`test/cmd`, `test/modules`) in Rust: a source
//! module sends an async message, a sync message and a group message to a
//! destination module, which prints them and answers the sync one; a second
//! destination in the same group gets the group message too.
//!
//! `cargo run -p beehive-context --example source_destination`
//! (stops by itself; Ctrl-C also shuts it down gracefully).

use std::time::Duration;

use beehive_context::{Hive, SimpleModule};
use beehive_model::{constants, Message};

const SOURCE: &str = "sourcemodule";
const DESTINATION: &str = "destinationmodule";
const DESTINATION_GROUP: &str = "destinationgroup";
const DESTINATION_GROUP_MEMBER: &str = "destinationgroupmodule";

fn destination(name: &'static str) -> SimpleModule {
    SimpleModule::new(name, DESTINATION_GROUP, move |hive: &Hive| loop {
        let msg = match hive.receive(name) {
            Ok(m) => m,
            Err(e) => {
                println!("{name}: {e}, stopping");
                return Ok(());
            }
        };
        println!("{name} got: {msg} content: {:?}", msg.content().as_str());
        if msg.is_sync() {
            let resp = msg.new_response("fine, and you?");
            hive.send_resp(resp)?;
        }
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let hive = Hive::new();
    hive.register(SimpleModule::new(SOURCE, "sourcegroup", |hive: &Hive| {
        let msg = Message::new("")
            .set_route(SOURCE, "")
            .set_resource_operation("test", constants::INSERT_OPERATION)
            .fill_body("hello");
        hive.send(DESTINATION, msg)?;

        let msg = Message::new("")
            .set_route(SOURCE, "")
            .set_resource_operation("test", constants::UPDATE_OPERATION)
            .fill_body("how are you");
        match hive.send_sync(DESTINATION, msg, Duration::from_secs(5)) {
            Ok(resp) => println!("get resp: {resp} content: {:?}", resp.content().as_str()),
            Err(e) => println!("failed to send sync message, error: {e}"),
        }

        let msg = Message::new("")
            .set_route(SOURCE, DESTINATION_GROUP)
            .set_resource_operation("test", constants::DELETE_OPERATION)
            .fill_body("fine");
        hive.send_to_group(DESTINATION_GROUP, msg)?;

        // Give the destinations a moment, then stop the whole hive.
        std::thread::sleep(Duration::from_millis(100));
        hive.request_shutdown();
        Ok(())
    }))?;
    hive.register(destination(DESTINATION))?;
    hive.register(destination(DESTINATION_GROUP_MEMBER))?;
    hive.start()?;
    let report = hive.run_until_shutdown(Duration::from_secs(5))?;
    println!("shutdown: {report:?}");
    Ok(())
}
