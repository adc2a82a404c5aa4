;; Declares 2 MiB of linear memory (32 pages) and answers every call with success: it runs
;; under the host's default limit (64 MiB) and is refused under `limits: {memory_mib: 1}`.
(module
  (memory (export "memory") 32)
  (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1))
)
