;; echo: answers each message by publishing its body to the message's reply subject, and
;; each HTTP request with its body (or, when that is empty, its path).
;; capabilities: wascc:messaging, wascc:http_server
;;
;; waPC ABI (docs/actors.md), waSCC's wascc:messaging and wascc:http_server contracts,
;; MessagePack as waSCC's codec writes it (maps keyed by camelCase names):
;;   the provider calls  DeliverMessage {"subject": str, "replyTo": str, "body": bin}
;;   echo then calls     __host_call("default", "wascc:messaging", "Publish",
;;                                   {"subject": <replyTo>, "replyTo": "", "body": <body>})
;; and answers DeliverMessage with nil (what a waSCC Rust actor's () is): the provider does
;; not use that answer. A message without a reply subject is not answered.
;;   the provider calls  HandleRequest {"method": str, "path": str, "queryString": str,
;;                                      "header": {str: str}, "body": bin}
;;   echo answers        {"statusCode": 200, "status": "OK", "header": {},
;;                        "body": <body, or path when body is empty>}
;; so `curl -d hi URL` prints hi and `curl URL/hello` prints /hello. HealthRequest is
;; answered nil (healthy); any other operation is an error.
(module
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (import "wapc" "__guest_error" (func $guest_error (param i32 i32)))
  (import "wapc" "__host_call"
    (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__host_error" (func $host_error (param i32)))
  (import "wapc" "__host_error_len" (func $host_error_len (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "DeliverMessage")           ;; 14 bytes
  (data (i32.const 32) "HealthRequest")            ;; 13
  (data (i32.const 48) "default")                  ;; 7: the binding name
  (data (i32.const 64) "wascc:messaging")          ;; 15
  (data (i32.const 80) "Publish")                  ;; 7
  (data (i32.const 96) "subject")                  ;; 7
  (data (i32.const 112) "replyTo")                 ;; 7
  (data (i32.const 128) "body")                    ;; 4
  (data (i32.const 144) "unknown operation")       ;; 17
  (data (i32.const 176) "malformed BrokerMessage") ;; 23
  (data (i32.const 208) "\c0")                     ;; 1: MessagePack nil
  (data (i32.const 224) "HandleRequest")           ;; 13
  (data (i32.const 240) "path")                    ;; 4
  (data (i32.const 256) "malformed Request")       ;; 17
  ;; 37: the Response up to its body's value, as waSCC's codec writes it: a fixmap of 4,
  ;; "statusCode" 200 (a uint8), "status" "OK", "header" {} (an empty fixmap), "body"
  (data (i32.const 288) "\84\aastatusCode\cc\c8\a6status\a2OK\a6header\80\a4body")
  ;; 1024 on: the operation name, the payload, then what we write.

  ;; What $item read: $kind 1 = str or bin (or nil, read as empty), its bytes at $at, $len
  ;; of them; 2 = an int, its value in $num; 0 = bool or float; 3 = a map or an array
  ;; ($skip). $out: where $put writes.
  (global $kind (mut i32) (i32.const 0))
  (global $at (mut i32) (i32.const 0))
  (global $len (mut i32) (i32.const 0))
  (global $num (mut i32) (i32.const 0))
  (global $out (mut i32) (i32.const 0))

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

  ;; ---- reading MessagePack (big-endian; https://github.com/msgpack/msgpack/blob/master/spec.md)

  ;; The $n bytes at $p as a big-endian unsigned number (of 8 bytes, the low 32 bits).
  (func $be (param $p i32) (param $n i32) (result i32)
    (local $v i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $v (i32.or (i32.shl (local.get $v) (i32.const 8))
                              (i32.load8_u (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $v))

  ;; Read the scalar at $p (nil, bool, int, float, str or bin) into $kind, $at, $len and
  ;; $num; the position after it, or -1 when it runs past $end or is a map or an array
  ;; (which $skip, below, passes over) or an extension (which no contract here carries).
  (func $item (param $p i32) (param $end i32) (result i32)
    (local $t i32) (local $w i32)
    (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const -1))))
    (local.set $t (i32.load8_u (local.get $p)))
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (global.set $kind (i32.const 0))
    (global.set $at (local.get $p))
    (global.set $len (i32.const 0))  ;; from here: the payload's size
    (block $payload
      ;; 0xxxxxxx and 111xxxxx: a fixint, the byte itself
      (if (i32.or (i32.lt_u (local.get $t) (i32.const 0x80))
                  (i32.ge_u (local.get $t) (i32.const 0xe0)))
        (then (global.set $kind (i32.const 2))
              (global.set $num (i32.extend8_s (local.get $t)))
              (return (local.get $p))))
      ;; 101xxxxx: a fixstr of xxxxx bytes
      (if (i32.eq (i32.and (local.get $t) (i32.const 0xe0)) (i32.const 0xa0))
        (then (global.set $kind (i32.const 1))
              (global.set $len (i32.and (local.get $t) (i32.const 31)))
              (br $payload)))
      ;; 0xc0 nil (an empty str here), 0xc2 false, 0xc3 true
      (if (i32.eq (local.get $t) (i32.const 0xc0))
        (then (global.set $kind (i32.const 1)) (br $payload)))
      (br_if $payload (i32.eq (i32.or (local.get $t) (i32.const 1)) (i32.const 0xc3)))
      ;; 0xca float32, 0xcb float64
      (if (i32.eq (i32.or (local.get $t) (i32.const 1)) (i32.const 0xcb))
        (then (global.set $len (i32.shl (i32.const 4) (i32.and (local.get $t) (i32.const 1))))
              (br $payload)))
      ;; 0xcc-0xcf uint 8/16/32/64, 0xd0-0xd3 int 8/16/32/64: 1 << (t & 3) bytes follow
      (if (i32.le_u (i32.sub (local.get $t) (i32.const 0xcc)) (i32.const 7))
        (then (global.set $kind (i32.const 2))
              (global.set $len (i32.shl (i32.const 1) (i32.and (local.get $t) (i32.const 3))))
              (br $payload)))
      ;; 0xc4-0xc6 bin 8/16/32 and 0xd9-0xdb str 8/16/32: a length of 1, 2 or 4 bytes
      (if (i32.le_u (i32.sub (local.get $t) (i32.const 0xc4)) (i32.const 2))
        (then (local.set $w (i32.shl (i32.const 1) (i32.sub (local.get $t) (i32.const 0xc4))))))
      (if (i32.le_u (i32.sub (local.get $t) (i32.const 0xd9)) (i32.const 2))
        (then (local.set $w (i32.shl (i32.const 1) (i32.sub (local.get $t) (i32.const 0xd9))))))
      (if (i32.or (i32.eqz (local.get $w))
                  (i32.gt_u (local.get $w) (i32.sub (local.get $end) (local.get $p))))
        (then (return (i32.const -1))))
      (global.set $kind (i32.const 1))
      (global.set $len (call $be (local.get $p) (local.get $w)))
      (local.set $p (i32.add (local.get $p) (local.get $w)))
      (global.set $at (local.get $p)))
    ;; the payload must end by $end (compared as sizes: no overflow)
    (if (i32.gt_u (global.get $len) (i32.sub (local.get $end) (local.get $p)))
      (then (return (i32.const -1))))
    (if (i32.eq (global.get $kind) (i32.const 2))  ;; a big-endian int, 8 and 16 bits signed
      (then (global.set $num (call $be (local.get $p) (global.get $len)))
            (if (i32.eq (local.get $t) (i32.const 0xd0))
              (then (global.set $num (i32.extend8_s (global.get $num)))))
            (if (i32.eq (local.get $t) (i32.const 0xd1))
              (then (global.set $num (i32.extend16_s (global.get $num)))))))
    (i32.add (local.get $p) (global.get $len)))

  ;; The position after the value at $p, or -1 as $item says. A scalar is read by $item; a
  ;; map or an array (a Request's header) is passed over with all it holds, nested ones
  ;; too, and leaves $kind 3. $todo counts the values still to pass; each takes a byte at
  ;; least, so a count larger than the bytes left is refused (and $todo cannot overflow).
  (func $skip (param $p i32) (param $end i32) (result i32)
    (local $q i32) (local $todo i32) (local $t i32) (local $n i32) (local $map i32)
    (local $w i32)
    (local.set $q (call $item (local.get $p) (local.get $end)))
    (if (i32.ge_s (local.get $q) (i32.const 0)) (then (return (local.get $q))))
    (local.set $todo (i32.const 1))
    (loop $next
      (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const -1))))
      (local.set $todo (i32.sub (local.get $todo) (i32.const 1)))
      (local.set $t (i32.load8_u (local.get $p)))
      (local.set $n (i32.const 0))
      (local.set $map (i32.const 0))
      (if (i32.eq (i32.and (local.get $t) (i32.const 0xe0)) (i32.const 0x80))
        (then ;; 1000nnnn a fixmap, 1001nnnn a fixarray, of nnnn entries
          (local.set $n (i32.and (local.get $t) (i32.const 15)))
          (local.set $map (i32.eqz (i32.and (local.get $t) (i32.const 0x10))))
          (local.set $p (i32.add (local.get $p) (i32.const 1))))
      (else (if (i32.le_u (i32.sub (local.get $t) (i32.const 0xdc)) (i32.const 3))
        (then ;; 0xdc array16, 0xdd array32, 0xde map16, 0xdf map32: 2 or 4 bytes of count
          (local.set $w (i32.shl (i32.const 2) (i32.and (local.get $t) (i32.const 1))))
          (if (i32.ge_u (local.get $w) (i32.sub (local.get $end) (local.get $p)))
            (then (return (i32.const -1))))
          (local.set $n (call $be (i32.add (local.get $p) (i32.const 1)) (local.get $w)))
          (local.set $map (i32.ge_u (local.get $t) (i32.const 0xde)))
          (local.set $p (i32.add (i32.add (local.get $p) (i32.const 1)) (local.get $w))))
      (else ;; a scalar
          (local.set $p (call $item (local.get $p) (local.get $end)))
          (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))))))
      ;; a map holds 2n values (keys and values), an array n: no more than the bytes left
      (if (i32.or (i32.gt_u (local.get $todo) (i32.sub (local.get $end) (local.get $p)))
                  (i32.gt_u (local.get $n)
                            (i32.shr_u (i32.sub (i32.sub (local.get $end) (local.get $p))
                                                (local.get $todo))
                                       (local.get $map))))
        (then (return (i32.const -1))))
      (local.set $todo (i32.add (local.get $todo) (i32.shl (local.get $n) (local.get $map))))
      (br_if $next (local.get $todo)))
    (global.set $kind (i32.const 3))
    (local.get $p))

  ;; Find the str key $key ($klen bytes) in the map at $p (fixmap or map16): 1 when found,
  ;; with its value read by $skip; 0 when the map has no such key; -1 when $p holds no
  ;; map or the map is malformed.
  (func $find (param $p i32) (param $end i32) (param $key i32) (param $klen i32) (result i32)
    (local $t i32) (local $n i32) (local $match i32)
    (if (i32.ge_u (local.get $p) (local.get $end)) (then (return (i32.const -1))))
    (local.set $t (i32.load8_u (local.get $p)))
    (if (i32.eq (i32.and (local.get $t) (i32.const 0xf0)) (i32.const 0x80))
      (then (local.set $n (i32.and (local.get $t) (i32.const 15)))  ;; 1000nnnn: fixmap
            (local.set $p (i32.add (local.get $p) (i32.const 1))))
      (else (if (i32.and (i32.eq (local.get $t) (i32.const 0xde))    ;; 0xde nnnn: map16
                         (i32.le_u (i32.add (local.get $p) (i32.const 3)) (local.get $end)))
        (then (local.set $n (call $be (i32.add (local.get $p) (i32.const 1)) (i32.const 2)))
              (local.set $p (i32.add (local.get $p) (i32.const 3))))
        (else (return (i32.const -1))))))
    (block $absent
      (loop $entry
        (br_if $absent (i32.eqz (local.get $n)))
        (local.set $p (call $item (local.get $p) (local.get $end)))  ;; the key
        (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))
        (local.set $match
          (i32.and (i32.eq (global.get $kind) (i32.const 1))
                   (call $eq (global.get $at) (global.get $len) (local.get $key) (local.get $klen))))
        (local.set $p (call $skip (local.get $p) (local.get $end)))  ;; its value
        (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))
        (if (local.get $match) (then (return (i32.const 1))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $entry)))
    (i32.const 0))

  ;; ---- writing MessagePack at $out

  ;; The low $n bytes of $v, big-endian ($n from 1 to 4).
  (func $put (param $v i32) (param $n i32)
    (loop $next
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (i32.store8 (global.get $out)
                  (i32.shr_u (local.get $v) (i32.shl (local.get $n) (i32.const 3))))
      (global.set $out (i32.add (global.get $out) (i32.const 1)))
      (br_if $next (local.get $n))))

  ;; A str ($tag 0xd9) or bin ($tag 0xc4) of the $len bytes at $ptr, in its shortest
  ;; form: fixstr below 32 bytes, else tag, tag + 1, tag + 2 for 8-, 16-, 32-bit lengths.
  (func $put_bytes (param $tag i32) (param $ptr i32) (param $len i32)
    (if (i32.and (i32.eq (local.get $tag) (i32.const 0xd9))
                 (i32.lt_u (local.get $len) (i32.const 32)))
      (then (call $put (i32.or (i32.const 0xa0) (local.get $len)) (i32.const 1)))
    (else (if (i32.lt_u (local.get $len) (i32.const 0x100))
      (then (call $put (local.get $tag) (i32.const 1))
            (call $put (local.get $len) (i32.const 1)))
    (else (if (i32.lt_u (local.get $len) (i32.const 0x10000))
      (then (call $put (i32.add (local.get $tag) (i32.const 1)) (i32.const 1))
            (call $put (local.get $len) (i32.const 2)))
    (else (call $put (i32.add (local.get $tag) (i32.const 2)) (i32.const 1))
          (call $put (local.get $len) (i32.const 4))))))))
    (memory.copy (global.get $out) (local.get $ptr) (local.get $len))
    (global.set $out (i32.add (global.get $out) (local.get $len))))

  ;; The last host call failed: its error (copied to $at) becomes this call's error.
  (func $host_failed (param $at i32) (result i32)
    (local $n i32)
    (local.set $n (call $host_error_len))
    (call $ensure (i32.add (local.get $at) (local.get $n)))
    (call $host_error (local.get $at))
    (call $guest_error (local.get $at) (local.get $n))
    (i32.const 0))

  ;; DeliverMessage: Publish the message's body to its replyTo, then answer nil.
  (func $deliver (param $msg i32) (param $end i32) (result i32)
    (local $found i32) (local $reply i32) (local $reply_len i32) (local $body i32)
    (local $body_len i32)
    (block $malformed
      ;; replyTo: a str (required); body: bin or str (absent: empty)
      (br_if $malformed (i32.ne (call $find (local.get $msg) (local.get $end)
                                            (i32.const 112) (i32.const 7)) (i32.const 1)))
      (br_if $malformed (i32.ne (global.get $kind) (i32.const 1)))
      (local.set $reply (global.get $at))
      (local.set $reply_len (global.get $len))
      (local.set $found (call $find (local.get $msg) (local.get $end) (i32.const 128) (i32.const 4)))
      (br_if $malformed (i32.lt_s (local.get $found) (i32.const 0)))
      (if (local.get $found)
        (then (br_if $malformed (i32.ne (global.get $kind) (i32.const 1)))
              (local.set $body (global.get $at))
              (local.set $body_len (global.get $len))))
      (if (local.get $reply_len)
        (then
          ;; Publish {"subject": replyTo, "replyTo": "", "body": body}, written after the request
          (global.set $out (local.get $end))
          (call $put (i32.const 0x83) (i32.const 1))  ;; 1000nnnn: a fixmap of 3 entries
          (call $put_bytes (i32.const 0xd9) (i32.const 96) (i32.const 7))
          (call $put_bytes (i32.const 0xd9) (local.get $reply) (local.get $reply_len))
          (call $put_bytes (i32.const 0xd9) (i32.const 112) (i32.const 7))
          (call $put_bytes (i32.const 0xd9) (local.get $reply) (i32.const 0))
          (call $put_bytes (i32.const 0xd9) (i32.const 128) (i32.const 4))
          (call $put_bytes (i32.const 0xc4) (local.get $body) (local.get $body_len))
          (if (i32.eqz (call $host_call (i32.const 48) (i32.const 7) (i32.const 64) (i32.const 15)
                                        (i32.const 80) (i32.const 7) (local.get $end)
                                        (i32.sub (global.get $out) (local.get $end))))
            (then (return (call $host_failed (global.get $out)))))))
      (call $guest_response (i32.const 208) (i32.const 1))
      (return (i32.const 1)))
    (call $guest_error (i32.const 176) (i32.const 23))
    (i32.const 0))

  ;; HandleRequest: answer 200 OK with the request's body, or its path when the body is
  ;; empty. path: a str (required); body: bin or str (absent or nil: empty).
  (func $handle (param $msg i32) (param $end i32) (result i32)
    (local $found i32) (local $body i32) (local $body_len i32)
    (block $malformed
      (br_if $malformed (i32.ne (call $find (local.get $msg) (local.get $end)
                                            (i32.const 240) (i32.const 4)) (i32.const 1)))
      (br_if $malformed (i32.ne (global.get $kind) (i32.const 1)))
      (local.set $body (global.get $at))
      (local.set $body_len (global.get $len))
      (local.set $found (call $find (local.get $msg) (local.get $end) (i32.const 128) (i32.const 4)))
      (br_if $malformed (i32.lt_s (local.get $found) (i32.const 0)))
      (if (local.get $found)
        (then (br_if $malformed (i32.ne (global.get $kind) (i32.const 1)))
              (if (global.get $len)
                (then (local.set $body (global.get $at))
                      (local.set $body_len (global.get $len))))))
      ;; the Response, written after the request: its fixed start, then the body as a bin
      (memory.copy (local.get $end) (i32.const 288) (i32.const 37))
      (global.set $out (i32.add (local.get $end) (i32.const 37)))
      (call $put_bytes (i32.const 0xc4) (local.get $body) (local.get $body_len))
      (call $guest_response (local.get $end) (i32.sub (global.get $out) (local.get $end)))
      (return (i32.const 1)))
    (call $guest_error (i32.const 256) (i32.const 17))
    (i32.const 0))

  (func (export "__guest_call") (param $op_len i32) (param $msg_len i32) (result i32)
    (local $msg i32) (local $end i32)
    (local.set $msg (i32.add (i32.const 1024) (local.get $op_len)))
    (local.set $end (i32.add (local.get $msg) (local.get $msg_len)))
    ;; room for the request and, after it, what we write: a Publish or a Response, each
    ;; some of the request's bytes plus at most 64 of MessagePack
    (call $ensure (i32.add (i32.add (local.get $end) (local.get $msg_len)) (i32.const 64)))
    (call $guest_request (i32.const 1024) (local.get $msg))
    (if (call $eq (i32.const 1024) (local.get $op_len) (i32.const 16) (i32.const 14))
      (then (return (call $deliver (local.get $msg) (local.get $end)))))
    (if (call $eq (i32.const 1024) (local.get $op_len) (i32.const 224) (i32.const 13))
      (then (return (call $handle (local.get $msg) (local.get $end)))))
    (if (call $eq (i32.const 1024) (local.get $op_len) (i32.const 32) (i32.const 13))
      (then (call $guest_response (i32.const 208) (i32.const 1))  ;; HealthRequest: nil
            (return (i32.const 1))))
    (call $guest_error (i32.const 144) (i32.const 17))
    (i32.const 0))
)
