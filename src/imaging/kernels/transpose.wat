;; jobd's WebAssembly SIMD kernels on PFFFT's memory (see pffftModule.ts).
;; Blocked transpose of 8-byte elements (complex float32 pairs) inside PFFFT's memory, for RealFft2d.
;; dst[c·dstStride + 8r] = src[r·srcStride + 8c] for r < nr, c < nc, strides in bytes; nr and nc
;; must be even. Each step moves a 2×2 block with two 16-byte loads, two shuffles and two 16-byte
;; stores (WebAssembly SIMD). Two loop orders: the inner loop runs along the short side, so that the
;; long strided side is walked once (columnsOuter for few rows, rowsOuter for few columns).
(module
  (import "env" "memory" (memory 1))
  (func (export "rowsOuter")
    (param $src i32) (param $ss i32) (param $dst i32) (param $ds i32) (param $nr i32) (param $nc i32)
    (local $r i32) (local $c i32) (local $a v128) (local $b v128)
    (local $s i32) (local $d i32)
    (local.set $r (i32.const 0))
    (block $rdone
      (loop $rows
        (br_if $rdone (i32.ge_u (local.get $r) (local.get $nr)))
        ;; s = src + r·ss, d = dst + 8r
        (local.set $s (i32.add (local.get $src) (i32.mul (local.get $r) (local.get $ss))))
        (local.set $d (i32.add (local.get $dst) (i32.shl (local.get $r) (i32.const 3))))
        (local.set $c (i32.const 0))
        (block $cdone
          (loop $cols
            (br_if $cdone (i32.ge_u (local.get $c) (local.get $nc)))
            ;; a = row r, columns c and c+1; b = row r+1, same columns
            (local.set $a (v128.load align=8 (local.get $s)))
            (local.set $b (v128.load align=8 (i32.add (local.get $s) (local.get $ss))))
            ;; column c gets (a0, b0), column c+1 gets (a1, b1)
            (v128.store align=8 (local.get $d)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a) (local.get $b)))
            (v128.store align=8 (i32.add (local.get $d) (local.get $ds))
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a) (local.get $b)))
            (local.set $s (i32.add (local.get $s) (i32.const 16)))
            (local.set $d (i32.add (local.get $d) (i32.shl (local.get $ds) (i32.const 1))))
            (local.set $c (i32.add (local.get $c) (i32.const 2)))
            (br $cols)))
        (local.set $r (i32.add (local.get $r) (i32.const 2)))
        (br $rows))))
  (func (export "columnsOuter")
    (param $src i32) (param $ss i32) (param $dst i32) (param $ds i32) (param $nr i32) (param $nc i32)
    (local $r i32) (local $c i32) (local $a v128) (local $b v128)
    (local $s i32) (local $d i32)
    (local.set $c (i32.const 0))
    (block $cdone
      (loop $cols
        (br_if $cdone (i32.ge_u (local.get $c) (local.get $nc)))
        ;; s = src + 8c, d = dst + c·ds
        (local.set $s (i32.add (local.get $src) (i32.shl (local.get $c) (i32.const 3))))
        (local.set $d (i32.add (local.get $dst) (i32.mul (local.get $c) (local.get $ds))))
        (local.set $r (i32.const 0))
        (block $rdone
          (loop $rows
            (br_if $rdone (i32.ge_u (local.get $r) (local.get $nr)))
            (local.set $a (v128.load align=8 (local.get $s)))
            (local.set $b (v128.load align=8 (i32.add (local.get $s) (local.get $ss))))
            (v128.store align=8 (local.get $d)
              (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23 (local.get $a) (local.get $b)))
            (v128.store align=8 (i32.add (local.get $d) (local.get $ds))
              (i8x16.shuffle 8 9 10 11 12 13 14 15 24 25 26 27 28 29 30 31 (local.get $a) (local.get $b)))
            (local.set $s (i32.add (local.get $s) (i32.shl (local.get $ss) (i32.const 1))))
            (local.set $d (i32.add (local.get $d) (i32.const 16)))
            (local.set $r (i32.add (local.get $r) (i32.const 2)))
            (br $rows)))
        (local.set $c (i32.add (local.get $c) (i32.const 2)))
        (br $cols))))
;; Shifted accumulation for the motion-corrected sum (motionFrames.ts FrameSummer), on a transposed
;; half-plane spectrum: acc[kx][ky] += spec[kx][ky] · x[kx] · y[ky] (· weights[bins[kx·h + ky]] in
;; addShiftedWeighted), complex float32 (re, im) pairs; x holds wc and y holds h phase factors. Two
;; complex values a step: h must be even. Offsets in bytes.
  (func $shiftStep (param $s i32) (param $a i32) (param $p v128)
    (local $v v128)
    (local.set $v (v128.load align=8 (local.get $s)))
    ;; acc += v · p: (re·pr − im·pi, im·pr + re·pi) as v·(pr, pr) + (im, re)·(−pi, pi)
    (v128.store align=8 (local.get $a)
      (f32x4.add (v128.load align=8 (local.get $a))
        (f32x4.add
          (f32x4.mul (local.get $v)
            (i8x16.shuffle 0 1 2 3 0 1 2 3 8 9 10 11 8 9 10 11 (local.get $p) (local.get $p)))
          (f32x4.mul
            (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $v) (local.get $v))
            (f32x4.mul (v128.const f32x4 -1 1 -1 1)
              (i8x16.shuffle 4 5 6 7 4 5 6 7 12 13 14 15 12 13 14 15 (local.get $p) (local.get $p))))))))
  (func $ramp (param $y i32) (param $cx v128) (param $sx v128) (result v128)
    (local $v v128)
    ;; x·y for two factors of y: (cx·cy − sx·sy, cx·sy + sx·cy), $sx = (−sx, sx, −sx, sx)
    (local.set $v (v128.load align=8 (local.get $y)))
    (f32x4.add (f32x4.mul (local.get $cx) (local.get $v))
      (f32x4.mul (local.get $sx)
        (i8x16.shuffle 4 5 6 7 0 1 2 3 12 13 14 15 8 9 10 11 (local.get $v) (local.get $v)))))
  (func (export "addShifted")
    (param $spec i32) (param $acc i32) (param $x i32) (param $y i32) (param $wc i32) (param $h i32)
    (local $k i32) (local $j i32) (local $cx v128) (local $sx v128) (local $off i32)
    (local.set $k (i32.const 0))
    (local.set $off (i32.const 0))
    (block $kdone
      (loop $cols
        (br_if $kdone (i32.ge_u (local.get $k) (local.get $wc)))
        (local.set $cx (f32x4.splat (f32.load (i32.add (local.get $x) (i32.shl (local.get $k) (i32.const 3))))))
        (local.set $sx (f32x4.mul (v128.const f32x4 -1 1 -1 1)
          (f32x4.splat (f32.load offset=4 (i32.add (local.get $x) (i32.shl (local.get $k) (i32.const 3)))))))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $rows
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $h)))
            (call $shiftStep
              (i32.add (local.get $spec) (local.get $off))
              (i32.add (local.get $acc) (local.get $off))
              (call $ramp (i32.add (local.get $y) (i32.shl (local.get $j) (i32.const 3)))
                (local.get $cx) (local.get $sx)))
            (local.set $off (i32.add (local.get $off) (i32.const 16)))
            (local.set $j (i32.add (local.get $j) (i32.const 2)))
            (br $rows)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $cols))))
  (func (export "addShiftedWeighted")
    (param $spec i32) (param $acc i32) (param $x i32) (param $y i32) (param $wc i32) (param $h i32)
    (param $bins i32) (param $weights i32)
    (local $k i32) (local $j i32) (local $cx v128) (local $sx v128) (local $off i32) (local $b i32)
    (local $q v128)
    (local.set $k (i32.const 0))
    (local.set $off (i32.const 0))
    (block $kdone
      (loop $cols
        (br_if $kdone (i32.ge_u (local.get $k) (local.get $wc)))
        (local.set $cx (f32x4.splat (f32.load (i32.add (local.get $x) (i32.shl (local.get $k) (i32.const 3))))))
        (local.set $sx (f32x4.mul (v128.const f32x4 -1 1 -1 1)
          (f32x4.splat (f32.load offset=4 (i32.add (local.get $x) (i32.shl (local.get $k) (i32.const 3)))))))
        (local.set $j (i32.const 0))
        (block $jdone
          (loop $rows
            (br_if $jdone (i32.ge_u (local.get $j) (local.get $h)))
            ;; bins are uint16, one per complex value: the pair at byte off / 4
            (local.set $b (i32.add (local.get $bins) (i32.shr_u (local.get $off) (i32.const 2))))
            (local.set $q
              (f32x4.replace_lane 3
                (f32x4.replace_lane 2
                  (f32x4.splat
                    (f32.load (i32.add (local.get $weights)
                      (i32.shl (i32.load16_u (local.get $b)) (i32.const 2)))))
                  (f32.load (i32.add (local.get $weights)
                    (i32.shl (i32.load16_u offset=2 (local.get $b)) (i32.const 2)))))
                (f32.load (i32.add (local.get $weights)
                  (i32.shl (i32.load16_u offset=2 (local.get $b)) (i32.const 2))))))
            (call $shiftStep
              (i32.add (local.get $spec) (local.get $off))
              (i32.add (local.get $acc) (local.get $off))
              (f32x4.mul (local.get $q)
                (call $ramp (i32.add (local.get $y) (i32.shl (local.get $j) (i32.const 3)))
                  (local.get $cx) (local.get $sx))))
            (local.set $off (i32.add (local.get $off) (i32.const 16)))
            (local.set $j (i32.add (local.get $j) (i32.const 2)))
            (br $rows)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $cols))))
)
