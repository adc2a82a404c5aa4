;; Asks for more memory than a store allows (2048 pages = 128 MiB).
(module
  (memory (export "memory") 2048)
  (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1))
)
