;; echo: answers HandleMessage with the message body it was given (waPC, docs/actors.md).
;; capabilities: wascc:messaging
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "HandleMessage")      ;; 13 bytes
  (data (i32.const 48) "unknown operation")  ;; 17 bytes

  ;; Grow the memory so that addresses below $end exist.
  (func $ensure (param $end i32)
    (local $need i32)
    (local.set $need
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
        (then unreachable)))))

  ;; 1 when the $alen bytes at $a equal the $blen bytes at $b.
  (func $eq (param $a i32) (param $alen i32) (param $b i32) (param $blen i32) (result i32)
    (local $i i32)
    (if (i32.ne (local.get $alen) (local.get $blen)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $alen)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $msg i32)
    (local.set $msg (i32.add (i32.const 1024) (local.get $op_len)))
    (call $ensure (i32.add (local.get $msg) (local.get $msg_len)))
    (call $guest_request (i32.const 1024) (local.get $msg))
    (if (i32.eqz (call $eq (i32.const 1024) (local.get $op_len) (i32.const 16) (i32.const 13)))
      (then
        (call $guest_error (i32.const 48) (i32.const 17))
        (return (i32.const 0))))
    (call $guest_response (local.get $msg) (local.get $msg_len))
    (i32.const 1))
)
