/**
 * The contrast transfer function of a transmission electron microscope (weak-phase approximation):
 *
 *   CTF(k, θ) = −sin(χ(k, θ) + φ),  φ = atan(A / √(1 − A²)) for amplitude contrast A
 *   χ(k, θ)  = π λ Δf(θ) k² − (π/2) Cs λ³ k⁴
 *   Δf(θ)    = ½ [Δf_U + Δf_V + (Δf_U − Δf_V) cos 2(θ − θ_ast)]
 *
 * Defocus is positive for underfocus, in Å; θ_ast is the angle of the Δf_U axis from x. λ is the
 * relativistic electron wavelength, λ = h / √(2 m₀ e V (1 + e V / (2 m₀ c²))).
 */

export interface Microscope {
  /** Acceleration voltage, kV. */
  voltageKv: number;
  /** Spherical aberration, mm. */
  csMm: number;
  /** Amplitude contrast fraction, 0..1 (typically 0.07 to 0.1). */
  amplitudeContrast: number;
  /** Å per pixel. */
  pixelSize: number;
}

export interface CtfParams {
  /** Å, underfocus positive. */
  defocusU: number;
  defocusV: number;
  /** Degrees, angle of the defocus-U axis from the x axis. */
  astigmatismAngle: number;
}

/** Relativistic electron wavelength in Å for a voltage in kV. */
export function electronWavelength(voltageKv: number): number {
  const h = 6.62607015e-34;
  const m0 = 9.1093837015e-31;
  const e = 1.602176634e-19;
  const c = 299792458;
  const v = voltageKv * 1000;
  return (h / Math.sqrt(2 * m0 * e * v * (1 + (e * v) / (2 * m0 * c * c)))) * 1e10;
}

/** Constants of χ for fast evaluation: χ = a·Δf·k² − b·k⁴ + φ. */
export interface CtfConstants {
  a: number;
  b: number;
  phase: number;
}

export function ctfConstants(scope: Microscope): CtfConstants {
  const lambda = electronWavelength(scope.voltageKv);
  const cs = scope.csMm * 1e7; // mm → Å
  const A = scope.amplitudeContrast;
  return {
    a: Math.PI * lambda,
    b: (Math.PI / 2) * cs * lambda ** 3,
    phase: Math.atan2(A, Math.sqrt(1 - A * A)),
  };
}

/** Defocus along direction θ (radians). */
export function defocusAt(p: CtfParams, theta: number): number {
  const t = (p.astigmatismAngle * Math.PI) / 180;
  return 0.5 * (p.defocusU + p.defocusV + (p.defocusU - p.defocusV) * Math.cos(2 * (theta - t)));
}

/** CTF at spatial frequency (kx, ky) in Å⁻¹. */
export function ctfAt(kx: number, ky: number, p: CtfParams, k: CtfConstants): number {
  const k2 = kx * kx + ky * ky;
  const df = defocusAt(p, Math.atan2(ky, kx));
  return -Math.sin(k.a * df * k2 - k.b * k2 * k2 + k.phase);
}
