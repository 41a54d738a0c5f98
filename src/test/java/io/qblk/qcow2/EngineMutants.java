package io.qblk.qcow2;

/** Switches for deliberately broken engine behaviour, so that the fault-injection suites can show they catch it. */
public final class EngineMutants {
    private EngineMutants() {}

    /** docs/ordering.md R18's control: every flush leaves out the last changed page of a table with several (and counts it written). */
    public static void leaveOutAPage(boolean on) {
        WriteBack.leaveOutAPage = on;
    }
}
