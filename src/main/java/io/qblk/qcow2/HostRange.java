package io.qblk.qcow2;

/** A byte range of the image file: {@code length} bytes at {@code offset}. */
record HostRange(long offset, long length) {}
