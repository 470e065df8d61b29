/** Assembles src/imaging/kernels/transpose.wat; the base64 of its bytes. */
export function assembleTranspose(): Promise<string>;
