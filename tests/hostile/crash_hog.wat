;; Reads its request (as every waPC actor does: the import ties the store to the host), grows
;; its memory to 63 MiB, writes to every 4 KiB page of it (so the host really holds it),
;; then traps. A host that never frees crashed instances grows by 63 MiB per crash.
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $at i32)
    (call $guest_request (i32.const 0) (local.get $op_len))
    (if (i32.eq (memory.grow (i32.const 1007)) (i32.const -1)) (then unreachable))
    (block $done
      (loop $page
        (br_if $done (i32.ge_u (local.get $at) (i32.const 66060288)))
        (i32.store8 (local.get $at) (i32.const 1))
        (local.set $at (i32.add (local.get $at) (i32.const 4096)))
        (br $page)))
    unreachable)
)
