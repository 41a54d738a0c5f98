package io.qblk.cli;

import java.io.PrintWriter;

/**
 * The {@code -p} progress display of long-running commands (convert, compare; later commit, rebase,
 * check). Not on a terminal it writes qemu-img's bytes exactly, {@code "    (NN.NN/100%)\r"} each time
 * the figure moved by more than the step (and at 0 and 100), then one newline at the end, so logs and
 * scripts written for qemu-img read it unchanged. On a terminal the same figure is followed by a bar.
 * Disabled, every call does nothing.
 */
public final class Progress {
    private static final int BAR = 40;

    private final PrintWriter out;
    private final boolean enabled;
    private final boolean terminal;
    private final double step;
    // float and the rounding of C's printf, so the figures are qemu-img's to the last digit
    private float current;
    private float lastPrinted = Float.NaN;

    /**
     * @param step print only when the figure moved by more than this many percent (qemu-img uses 1
     *             for convert, 2 for compare)
     */
    public Progress(PrintWriter out, boolean enabled, boolean terminal, double step) {
        this.out = out;
        this.enabled = enabled;
        this.terminal = terminal;
        this.step = step;
    }

    /** For a command writing to {@code out}: a bar when this process's output is a terminal. */
    public static Progress of(PrintWriter out, boolean enabled, double step) {
        java.io.Console c = System.console();
        return new Progress(out, enabled, c != null && c.isTerminal(), step);
    }

    /** Shows 0%. */
    public void start() {
        set(0);
    }

    /** Advances by {@code done} units out of {@code total}. */
    public void advance(long done, long total) {
        if (total > 0) set(current + ((float) done / total * 100f) / 100f * 100f);
    }

    /** Sets the figure to {@code percent} (0..100). */
    public void set(double percent) {
        current = (float) Math.max(0, Math.min(100, percent));
        if (!enabled) return;
        if (Float.isNaN(lastPrinted) || current > lastPrinted + step || current < lastPrinted - step || current == 100 || current == 0) {
            lastPrinted = current;
            print();
        }
    }

    /** Shows 100% and ends the line. */
    public void finish() {
        set(100);
        end();
    }

    /** Ends the progress line where it stands (after an error or a mismatch). */
    public void end() {
        if (!enabled) return;
        out.print('\n');
        out.flush();
    }

    private void print() {
        String figure = new java.math.BigDecimal(current).setScale(2, java.math.RoundingMode.HALF_EVEN).toPlainString();
        StringBuilder sb = new StringBuilder("    (").append(figure).append("/100%)");
        if (terminal) {
            int full = (int) (current / 100 * BAR);
            sb.append(" [").append("#".repeat(full)).append(" ".repeat(BAR - full)).append(']');
        }
        out.print(sb.append('\r'));
        out.flush();
    }

    public double percent() {
        return current;
    }
}
