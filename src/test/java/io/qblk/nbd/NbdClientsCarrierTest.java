package io.qblk.nbd;

/** {@link NbdClientsTest} with each connection on a ring thread of its own ({@link NbdServer.Options#carrier()}). */
class NbdClientsCarrierTest extends NbdClientsTest implements NbdVariant.OnCarrier {
}
