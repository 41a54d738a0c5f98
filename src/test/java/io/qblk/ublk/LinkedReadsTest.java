package io.qblk.ublk;

import static org.junit.jupiter.api.Assertions.*;

import org.junit.jupiter.api.Test;

/** The kernel gate of reads linked to their commit: on below 6.10 (6.1 copies a linked command), off from 6.10 (6.12 does not). */
class LinkedReadsTest {
    @Test
    void onlyKernelsBelow610LinkByDefault() {
        assertTrue(LinkedReads.safeOn("6.1.192"));
        assertTrue(LinkedReads.safeOn("6.1.0-42-amd64"));
        assertTrue(LinkedReads.safeOn("6.9.12"));
        assertTrue(LinkedReads.safeOn("5.19.0"));
        assertFalse(LinkedReads.safeOn("6.10.0"));
        assertFalse(LinkedReads.safeOn("6.12.118"));
        assertFalse(LinkedReads.safeOn("7.0.1"));
        assertFalse(LinkedReads.safeOn("garbage"));
        assertFalse(LinkedReads.safeOn(""));
    }
}
