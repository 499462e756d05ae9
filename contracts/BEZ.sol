// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/// @title BEZ-Coin: the ERC-20 token Gatekeeper credits 1:1 (1 BEZ = 1 credit).
/// @notice Minimal ERC-20 with an owner who may mint. Gatekeeper deploys it on its embedded
///         development chain; on a real network it only reads the deployed token's Transfer logs.
contract BEZ {
    string public constant name = "BEZ-Coin";
    string public constant symbol = "BEZ";
    uint8 public constant decimals = 18;

    uint256 public totalSupply;
    address public owner;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor() {
        owner = msg.sender;
    }

    function mint(address to, uint256 value) external returns (bool) {
        require(msg.sender == owner, "BEZ: only the owner mints");
        require(to != address(0), "BEZ: mint to the zero address");
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
        return true;
    }

    function transfer(address to, uint256 value) external returns (bool) {
        _move(msg.sender, to, value);
        return true;
    }

    function approve(address spender, uint256 value) external returns (bool) {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
        return true;
    }

    function transferFrom(address from, address to, uint256 value) external returns (bool) {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "BEZ: allowance exceeded");
        if (allowed != type(uint256).max) {
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
        return true;
    }

    function _move(address from, address to, uint256 value) private {
        require(to != address(0), "BEZ: transfer to the zero address");
        uint256 held = balanceOf[from];
        require(held >= value, "BEZ: balance too low");
        unchecked {
            balanceOf[from] = held - value;
        }
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
