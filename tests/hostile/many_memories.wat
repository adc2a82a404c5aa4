;; Sixteen linear memories of 900 pages (56 MiB) each: under a per-memory limit of 64 MiB
;; every one, 900 MB together. The store allows one memory: instantiation is refused.
(module
  (memory (export "memory") 900)
  (memory 900) (memory 900) (memory 900) (memory 900) (memory 900)
  (memory 900) (memory 900) (memory 900) (memory 900) (memory 900)
  (memory 900) (memory 900) (memory 900) (memory 900) (memory 900)
  (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1))
)
