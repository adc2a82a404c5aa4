"""WebAssembly actors on a host: the waPC host (:mod:`.wapc`), the compiled-module cache
(:mod:`.modules`) and the runtime that ties them to gantry and the providers
(:mod:`.runtime`). See docs/actors.md for the ABI."""
