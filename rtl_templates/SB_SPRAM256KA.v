// Written by hwgen: behavioural model of the Lattice iCE40 UltraPlus SB_SPRAM256KA single-port
// RAM (16384 words of 16 bits) as hwgen uses it: one access per cycle, on the rising CLOCK edge
// with CHIPSELECT high; a read (WREN low) gives the word on DATAOUT after the edge, a write
// stores the nibbles MASKWREN selects and leaves DATAOUT undefined; with CHIPSELECT low DATAOUT
// holds. STANDBY undefines DATAOUT; SLEEP or POWEROFF low clears it (contents kept in this
// model; the part loses them at power-off, which hwgen never uses).
module SB_SPRAM256KA(
  input [13:0] ADDRESS,
  input [15:0] DATAIN,
  input [3:0] MASKWREN,
  input WREN, CHIPSELECT, CLOCK, STANDBY, SLEEP, POWEROFF,
  output reg [15:0] DATAOUT
);
  reg [15:0] words [0:16383];
  wire [15:0] keep = {{4{~MASKWREN[3]}}, {4{~MASKWREN[2]}}, {4{~MASKWREN[1]}},
                      {4{~MASKWREN[0]}}};
  always @(posedge CLOCK) begin
    if (SLEEP || !POWEROFF)
      DATAOUT <= 16'd0;
    else if (STANDBY)
      DATAOUT <= 16'bx;
    else if (CHIPSELECT) begin
      if (WREN) begin
        words[ADDRESS] <= (words[ADDRESS] & keep) | (DATAIN & ~keep);
        DATAOUT <= 16'bx;
      end else
        DATAOUT <= words[ADDRESS];
    end
  end
endmodule
