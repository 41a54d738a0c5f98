package io.qblk.qcow2;

/** {@code clusters} consecutive host clusters starting at byte {@code offset} (a pending free). */
record HostRun(long offset, long clusters) {}
