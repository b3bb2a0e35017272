//! Built images of the project's own ROMs.
