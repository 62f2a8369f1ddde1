//! Host-side traits and types generated from the vendored Spin WIT (`host/wit`).
//!
//! A module of its own so that the crate root holds only the public API.

wasmtime::component::bindgen!({
    path: "wit",
    world: "fermyon:spin/host",
    imports: { default: async },
    with: {
        "fermyon:spin/sqlite.connection": crate::sqlite::Connection,
        "spin:sqlite/sqlite.connection": crate::sqlite::Connection,
    },
});
