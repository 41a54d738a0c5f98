package io.qblk.faults;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import org.junit.jupiter.api.Test;

/**
 * docs/ordering.md C1-C3: power loss anywhere in commit (with and without emptying FILE) and safe
 * rebase (onto qcow2, raw, nothing), at three cluster sizes, crash states of both files of the chain
 * taken together, at most 300 state pairs per scenario (-Dqblk.chainStatesPerScenario=N; every
 * crash point: fault-injection/run chain). Seed: -Dqblk.seed=S.
 */
class ChainCrashExplorerTest {

    @Test
    void commitAndRebaseKeepTheChainReadingTheSame() throws Exception {
        long seed = CrashStateExplorerTest.seed();
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        ChainCrashExplorer x = new ChainCrashExplorer(seed, 2, 25, new PrintStream(buf, true));
        x.budgetPerScenario = Long.getLong("qblk.chainStatesPerScenario", 300);
        x.runAll();
        System.out.print(buf);
        System.out.println(x.summary());
        assertEquals("chain crash-states: explored=" + x.explored + " corrupt=0 wrong-view=0 wrong-base=0", x.summary(),
                "seed " + seed + " (rerun: fault-injection/run chain --seed " + seed + ")\n" + buf);
        assertTrue(x.explored >= 2_000, "explored only " + x.explored);
        assertTrue(x.emptiedStates > 0, "no state caught FILE being emptied");
        assertTrue(x.newHeaderStates > 0, "no state had the new backing file");
        if (QemuImgCheck.available()) assertTrue(x.qemuChecked > 0, "qemu-img judged no state");
    }

    /**
     * The checker must notice a BASE that acknowledges its datasyncs without making anything durable:
     * FILE is then emptied while BASE's copy may still be lost, and FILE reads wrong through its chain.
     */
    @Test
    void baseThatDropsSyncsIsCaught() throws Exception {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        ChainCrashExplorer x = new ChainCrashExplorer(11, 2, 0, new PrintStream(buf, true));
        x.baseDropsSyncs = true;
        x.budgetPerScenario = 300;
        for (int cs : ChainCrashExplorer.CLUSTER_SIZES) x.explore("commit", cs);
        assertTrue(x.wrongView > 0, "emptying FILE over a BASE whose copy is not durable must show: " + x.summary() + "\n" + buf);
    }
}
