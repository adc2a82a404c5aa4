;; publish_flood (issue 12, item 4): on HandleMessage, Publish the message body
;; ("subject\nbody") through its "default" messaging binding again and again, up to
;; 100,000 times, until a Publish fails. Answers "published" when all went out, else the
;; error the provider gave (a quota's message), as its response.
;; capabilities: wascc:messaging
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 48) "default")            ;; 7
  (data (i32.const 64) "wascc:messaging")    ;; 15
  (data (i32.const 96) "Publish")            ;; 7
  (data (i32.const 112) "published")         ;; 9

  (func $ensure (param $end i32)
    (local $need i32)
    (local.set $need
      (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
               (memory.size)))
    (if (i32.gt_s (local.get $need) (i32.const 0))
      (then (if (i32.eq (memory.grow (local.get $need)) (i32.const -1))
        (then unreachable)))))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $msg i32) (local $out i32) (local $n i32) (local $i i32)
    (local.set $msg (i32.add (i32.const 1024) (local.get $op_len)))
    (local.set $out (i32.add (local.get $msg) (local.get $msg_len)))
    (call $ensure (i32.add (local.get $out) (i32.const 65536)))
    (call $guest_request (i32.const 1024) (local.get $msg))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (i32.const 100000)))
        (if (i32.eqz (call $host_call
              (i32.const 48) (i32.const 7) (i32.const 64) (i32.const 15)
              (i32.const 96) (i32.const 7) (local.get $msg) (local.get $msg_len)))
          (then
            (local.set $n (call $host_error_len))
            (if (i32.gt_u (local.get $n) (i32.const 65536)) (then unreachable))
            (call $host_error (local.get $out))
            (call $guest_response (local.get $out) (local.get $n))
            (return (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (call $guest_response (i32.const 112) (i32.const 9))
    (i32.const 1))
)
