//! The beehive `Message`, its header and route, and Go's builders.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::constants::{RESPONSE_ERROR_OPERATION, RESPONSE_OPERATION};
use crate::content::Content;

/// The message header (Go `model.MessageHeader`).
///
/// JSON names: `msg_id`, `parent_msg_id` (omitted when empty), `timestamp`,
/// `resourceversion` (omitted when empty), `sync` (omitted when false),
/// `type` (omitted when empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MessageHeader {
    /// The message id, a v4 UUID for messages made by [`Message::new`].
    pub id: String,
    /// The id of the message this one answers; set on responses.
    pub parent_id: String,
    /// Creation time in milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Resource version of the Kubernetes object carried, if any.
    pub resource_version: String,
    /// Set by `send_sync` on requests that wait for a response.
    pub sync: bool,
    /// The context type that delivers the message (`channel`, `unixpacket`);
    /// empty means `channel`.
    pub message_type: String,
}

/// The message route (Go `model.MessageRoute`); every field is omitted from
/// the JSON when empty, and the route itself is always written (`{}` when empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct MessageRoute {
    /// The module the message comes from.
    pub source: String,
    /// The module the message goes to.
    pub destination: String,
    /// The group the message is broadcast to.
    pub group: String,
    /// The operation on the resource (`insert`, `update`, `response`, ...).
    pub operation: String,
    /// The resource operated on (`default/pod/nginx`, `module`, ...).
    pub resource: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Parts {
    pub(crate) header: MessageHeader,
    pub(crate) route: MessageRoute,
    pub(crate) content: Arc<Content>,
}

/// A beehive message (Go `model.Message`).
///
/// A `Message` is a shared handle: cloning it costs one reference-count
/// increment, whatever the size of its content, so the bus can hand the same
/// message to many modules cheaply. Changing a field of a shared message
/// copies the header and route (a few short strings) but never the content,
/// which is shared until it is itself changed.
///
/// The builders mirror Go's (`NewMessage(parent).BuildRouter(...).FillBody(...)`)
/// and take and return the message by value:
///
/// ```
/// use beehive_model::{Message, constants};
///
/// let msg = Message::new("")
///     .build_router("edged", "meta", "default/pod/nginx", constants::UPDATE_OPERATION)
///     .fill_body("hello");
/// assert_eq!(msg.source(), "edged");
/// assert_eq!(msg.id().len(), 36);
/// let json = beehive_model::to_vec(&msg).unwrap();
/// assert!(json.starts_with(b"{\"header\":{\"msg_id\":\""));
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct Message {
    inner: Arc<Parts>,
}

/// Milliseconds since the Unix epoch, as Go's `time.Now().UnixNano() / 1e6`.
pub fn now_millis() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// A new random (version 4) UUID in canonical lower-case form.
pub fn new_uuid() -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    // Encoded into a stack buffer, then copied into a string of exactly its
    // length: no formatting machinery, one allocation.
    String::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
}

impl Message {
    /// Go `NewRawMessage()`: every field empty, content nil.
    pub fn raw() -> Self {
        Message::default()
    }

    /// Go `NewMessage(parentID)`: a fresh v4 UUID, the given parent id and the
    /// current time in milliseconds.
    pub fn new(parent_id: impl Into<String>) -> Self {
        Message::from_parts(
            MessageHeader {
                id: new_uuid(),
                parent_id: parent_id.into(),
                timestamp: now_millis(),
                ..MessageHeader::default()
            },
            MessageRoute::default(),
            Content::Null,
        )
    }

    /// Assembles a message from its parts.
    pub fn from_parts(header: MessageHeader, route: MessageRoute, content: Content) -> Self {
        Message { inner: Arc::new(Parts { header, route, content: Arc::new(content) }) }
    }

    pub(crate) fn from_inner(parts: Parts) -> Self {
        Message { inner: Arc::new(parts) }
    }

    pub(crate) fn parts(&self) -> &Parts {
        &self.inner
    }

    /// Takes the message apart (copying the header and route only when the
    /// message is shared).
    pub fn into_parts(self) -> (MessageHeader, MessageRoute, Content) {
        let parts = Arc::unwrap_or_clone(self.inner);
        (parts.header, parts.route, Arc::unwrap_or_clone(parts.content))
    }

    /// The header.
    pub fn header(&self) -> &MessageHeader {
        &self.inner.header
    }

    /// The route.
    pub fn route(&self) -> &MessageRoute {
        &self.inner.route
    }

    /// The content.
    pub fn content(&self) -> &Content {
        &self.inner.content
    }

    /// The content as a shared handle (no copy).
    pub fn shared_content(&self) -> Arc<Content> {
        Arc::clone(&self.inner.content)
    }

    /// Mutable header; copies header and route if the message is shared.
    pub fn header_mut(&mut self) -> &mut MessageHeader {
        &mut Arc::make_mut(&mut self.inner).header
    }

    /// Mutable route; copies header and route if the message is shared.
    pub fn route_mut(&mut self) -> &mut MessageRoute {
        &mut Arc::make_mut(&mut self.inner).route
    }

    /// Mutable content; copies the content if it is shared.
    pub fn content_mut(&mut self) -> &mut Content {
        Arc::make_mut(&mut Arc::make_mut(&mut self.inner).content)
    }

    /// True when two handles share the same message (no field compared).
    pub fn ptr_eq(a: &Message, b: &Message) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    // ----- Go's getters -----

    /// Go `GetID()`.
    pub fn id(&self) -> &str {
        &self.inner.header.id
    }
    /// Go `GetParentID()`.
    pub fn parent_id(&self) -> &str {
        &self.inner.header.parent_id
    }
    /// Go `GetTimestamp()`.
    pub fn timestamp(&self) -> i64 {
        self.inner.header.timestamp
    }
    /// Go `GetResourceVersion()`.
    pub fn resource_version(&self) -> &str {
        &self.inner.header.resource_version
    }
    /// Go `IsSync()`.
    pub fn is_sync(&self) -> bool {
        self.inner.header.sync
    }
    /// Go `GetType()`: the context type; empty means `channel`.
    pub fn message_type(&self) -> &str {
        &self.inner.header.message_type
    }
    /// Go `GetSource()`.
    pub fn source(&self) -> &str {
        &self.inner.route.source
    }
    /// Go `GetDestination()`.
    pub fn destination(&self) -> &str {
        &self.inner.route.destination
    }
    /// Go `GetGroup()`.
    pub fn group(&self) -> &str {
        &self.inner.route.group
    }
    /// Go `GetOperation()`.
    pub fn operation(&self) -> &str {
        &self.inner.route.operation
    }
    /// Go `GetResource()`.
    pub fn resource(&self) -> &str {
        &self.inner.route.resource
    }

    /// Go `GetContentData()`: raw bytes for `[]byte` content, the string's
    /// bytes for string content, the Go JSON encoding otherwise.
    pub fn content_data(&self) -> Result<bytes::Bytes, crate::EncodeError> {
        self.inner.content.data()
    }

    /// Go `IsEmpty()`: every field zero and the content nil.
    pub fn is_empty(&self) -> bool {
        let p = &*self.inner;
        p.header == MessageHeader::default()
            && p.route == MessageRoute::default()
            && matches!(*p.content, Content::Null)
    }

    // ----- Go's builders -----

    /// Go `BuildHeader(id, parentID, timestamp)`.
    pub fn build_header(mut self, id: impl Into<String>, parent_id: impl Into<String>, timestamp: i64) -> Self {
        let h = self.header_mut();
        h.id = id.into();
        h.parent_id = parent_id.into();
        h.timestamp = timestamp;
        self
    }

    /// Go `BuildRouter(source, group, res, opr)`.
    pub fn build_router(
        self,
        source: impl Into<String>,
        group: impl Into<String>,
        resource: impl Into<String>,
        operation: impl Into<String>,
    ) -> Self {
        self.set_route(source, group).set_resource_operation(resource, operation)
    }

    /// Go `SetRoute(source, group)`.
    pub fn set_route(mut self, source: impl Into<String>, group: impl Into<String>) -> Self {
        let r = self.route_mut();
        r.source = source.into();
        r.group = group.into();
        self
    }

    /// Go `SetResourceOperation(res, opr)`.
    pub fn set_resource_operation(mut self, resource: impl Into<String>, operation: impl Into<String>) -> Self {
        let r = self.route_mut();
        r.resource = resource.into();
        r.operation = operation.into();
        self
    }

    /// Go `SetType(msgType)`.
    pub fn set_type(mut self, message_type: impl Into<String>) -> Self {
        self.header_mut().message_type = message_type.into();
        self
    }

    /// Go `SetDestination(dest)`.
    pub fn set_destination(mut self, destination: impl Into<String>) -> Self {
        self.route_mut().destination = destination.into();
        self
    }

    /// Go `SetResourceVersion(rv)`.
    pub fn set_resource_version(mut self, resource_version: impl Into<String>) -> Self {
        self.header_mut().resource_version = resource_version.into();
        self
    }

    /// Sets the `sync` flag (Go sets `Header.Sync` directly in `SendSync`).
    pub fn set_sync(mut self, sync: bool) -> Self {
        self.header_mut().sync = sync;
        self
    }

    /// Go `UpdateID()`: a fresh v4 UUID as id.
    pub fn update_id(mut self) -> Self {
        self.header_mut().id = new_uuid();
        self
    }

    /// Go `FillBody(content)`.
    pub fn fill_body(mut self, content: impl Into<Content>) -> Self {
        let parts = Arc::make_mut(&mut self.inner);
        match Arc::get_mut(&mut parts.content) {
            // A content nobody else holds (a new message's `Null`) is
            // overwritten in place: no allocation.
            Some(own) => *own = content.into(),
            None => parts.content = Arc::new(content.into()),
        }
        self
    }

    /// Sets the content from a shared handle (no copy).
    pub fn fill_shared_body(mut self, content: Arc<Content>) -> Self {
        Arc::make_mut(&mut self.inner).content = content;
        self
    }

    /// Go `Clone(message)`: a new id; parent id, timestamp, source, group,
    /// resource, operation and content kept; destination, resource version,
    /// sync and type dropped. The content is shared, not copied.
    pub fn clone_with_new_id(&self) -> Self {
        let p = &*self.inner;
        Message::from_inner(Parts {
            header: MessageHeader {
                id: new_uuid(),
                parent_id: p.header.parent_id.clone(),
                timestamp: p.header.timestamp,
                ..MessageHeader::default()
            },
            route: MessageRoute {
                source: p.route.source.clone(),
                group: p.route.group.clone(),
                resource: p.route.resource.clone(),
                operation: p.route.operation.clone(),
                destination: String::new(),
            },
            content: Arc::clone(&p.content),
        })
    }

    /// Go `NewRespByMessage(message, content)`: a new message (new id, current
    /// time) whose parent id is this message's id, with source, group,
    /// resource and type copied and operation `response`.
    pub fn new_response(&self, content: impl Into<Content>) -> Self {
        Message::new(self.id())
            .set_route(self.source(), self.group())
            .set_resource_operation(self.resource(), RESPONSE_OPERATION)
            .set_type(self.message_type())
            .fill_body(content)
    }

    /// Go `NewErrorMessage(message, errContent)`: a new message whose parent id
    /// is this message's id, with the resource copied, operation `error` and
    /// the error text as content. Source, group and type are left empty, as in Go.
    pub fn new_error(&self, error: impl Into<String>) -> Self {
        Message::new(self.id())
            .set_resource_operation(self.resource(), RESPONSE_ERROR_OPERATION)
            .fill_body(Content::String(error.into()))
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("header", &self.inner.header)
            .field("route", &self.inner.route)
            .field("content", &self.inner.content)
            .finish()
    }
}

impl fmt::Display for Message {
    /// Go's `String()`: `MessageID: .. ParentID: .. Group: .. Source: ..
    /// Destination: .. Resource: .. Operation: ..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MessageID: {} ParentID: {} Group: {} Source: {} Destination: {} Resource: {} Operation: {}",
            self.id(),
            self.parent_id(),
            self.group(),
            self.source(),
            self.destination(),
            self.resource(),
            self.operation()
        )
    }
}
