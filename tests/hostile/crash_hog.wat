;; Grows its memory to 63 MiB, writes to every 4 KiB page of it (so the host really holds
;; it), then traps. A host that never frees crashed instances grows by 63 MiB per crash.
(module
  (memory (export "memory") 1)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (local $at i32)
    (if (i32.eq (memory.grow (i32.const 1007)) (i32.const -1)) (then unreachable))
    (block $done
      (loop $page
        (br_if $done (i32.ge_u (local.get $at) (i32.const 66060288)))
        (i32.store8 (local.get $at) (i32.const 1))
        (local.set $at (i32.add (local.get $at) (i32.const 4096)))
        (br $page)))
    unreachable)
)
