;; capabilities: wascc:http_server
;; A waSCC HTTP actor without a MessagePack decoder: it answers HandleRequest with a
;; pre-encoded waSCC Response {statusCode: 200, status: "OK", header: {content-type:
;; application/x-msgpack}, body: <the Request payload as received>}, so a test reads the
;; exact Request the provider sent. The last byte of the payload (the HTTP body's last
;; byte, body being the Request's last field) picks a behaviour instead:
;;   F  fail the call (__guest_error "failed on purpose")
;;   M  answer a malformed Response (the byte c1, never valid MessagePack)
;;   H  answer a Response whose header value holds CR LF
;;   S  spin 400,000,000 loop turns first (a slow actor: ~0.2 s here), then echo
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "HandleRequest")      ;; 13 bytes
  (data (i32.const 48) "unknown operation")  ;; 17 bytes
  (data (i32.const 80) "failed on purpose")  ;; 17 bytes
  (data (i32.const 112) "\c1")               ;; 1 byte
  ;; the Response up to its body's bin32 marker: 73 bytes (+ 4 length bytes, then the body)
  (data (i32.const 128) "\84\aastatusCode\cc\c8\a6status\a2OK\a6header\81\accontent-type\b5application/x-msgpack\a4body\c6")
  ;; {statusCode: 200, status: "OK", header: {x-bad: "a\r\nb"}, body: ""}: 50 bytes
  (data (i32.const 224) "\84\aastatusCode\cc\c8\a6status\a2OK\a6header\81\a5x-bad\a4a\0d\0ab\a4body\c4\00")

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
    (local $resp i32)
    (local $msg i32)
    (local $i i32)
    (local $last i32)
    ;; the operation at 4096, then the response: 77 bytes of head, the payload right after
    (local.set $resp (i32.add (i32.const 4096) (local.get $op_len)))
    (local.set $msg (i32.add (local.get $resp) (i32.const 77)))
    (call $ensure (i32.add (local.get $msg) (local.get $msg_len)))
    (call $guest_request (i32.const 4096) (local.get $msg))
    (if (i32.eqz (call $eq (i32.const 4096) (local.get $op_len) (i32.const 16) (i32.const 13)))
      (then
        (call $guest_error (i32.const 48) (i32.const 17))
        (return (i32.const 0))))
    (if (i32.gt_u (local.get $msg_len) (i32.const 0))
      (then (local.set $last (i32.load8_u
        (i32.add (local.get $msg) (i32.sub (local.get $msg_len) (i32.const 1)))))))
    (if (i32.eq (local.get $last) (i32.const 0x46))  ;; F
      (then
        (call $guest_error (i32.const 80) (i32.const 17))
        (return (i32.const 0))))
    (if (i32.eq (local.get $last) (i32.const 0x4d))  ;; M
      (then
        (call $guest_response (i32.const 112) (i32.const 1))
        (return (i32.const 1))))
    (if (i32.eq (local.get $last) (i32.const 0x48))  ;; H
      (then
        (call $guest_response (i32.const 224) (i32.const 50))
        (return (i32.const 1))))
    (if (i32.eq (local.get $last) (i32.const 0x53))  ;; S
      (then
        (local.set $i (i32.const 400000000))
        (loop $spin
          (local.set $i (i32.sub (local.get $i) (i32.const 1)))
          (br_if $spin (local.get $i)))))
    ;; copy the 73-byte head, then the payload's length as a big-endian u32
    (local.set $i (i32.const 0))
    (block $copied
      (loop $copy
        (br_if $copied (i32.ge_u (local.get $i) (i32.const 73)))
        (i32.store8 (i32.add (local.get $resp) (local.get $i))
                    (i32.load8_u (i32.add (i32.const 128) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $copy)))
    (i32.store8 (i32.add (local.get $resp) (i32.const 73))
                (i32.shr_u (local.get $msg_len) (i32.const 24)))
    (i32.store8 (i32.add (local.get $resp) (i32.const 74))
                (i32.shr_u (local.get $msg_len) (i32.const 16)))
    (i32.store8 (i32.add (local.get $resp) (i32.const 75))
                (i32.shr_u (local.get $msg_len) (i32.const 8)))
    (i32.store8 (i32.add (local.get $resp) (i32.const 76)) (local.get $msg_len))
    (call $guest_response (local.get $resp) (i32.add (i32.const 77) (local.get $msg_len)))
    (i32.const 1))
)
